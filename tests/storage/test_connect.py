"""nanonas.storage.connect: opening every storage kind, one-line failures, faults that surface.

The server tests use PostgreSQL, MariaDB and Redis on 127.0.0.1 (the CI services; override with
NANONAS_TEST_POSTGRES / _MYSQL / _REDIS). Without a server they skip, saying why; with CI=true
they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid

import optuna
import pytest
import sqlalchemy
from conftest import server

from nanonas.errors import ConfigError, NanonasError
from nanonas.storage import ConnectionLost, Contact, StorageError, check_url, fault, open_storage

KINDS = ["sqlite", "journal-file", "postgresql", "mysql", "redis"]


def url_for(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "journal-file":
        return str(tmp_path / "study.log")
    return server(kind)


def unique_name() -> str:
    return f"test-storage-{uuid.uuid4().hex[:12]}"


def with_database(url: str, database: str) -> str:
    return sqlalchemy.engine.make_url(url).set(database=database).render_as_string(False)


@pytest.mark.parametrize(
    "options",
    [
        {"connect_timeout": 0},
        {"connect_timeout": 1.5},
        {"reconnect_timeout": -1},
        {"reconnect_timeout": 0},
        {"reconnect_timeout": float("inf")},
        {"reconnect_timeout": True},
    ],
)
def test_bad_options_are_refused(options, tmp_path):
    with pytest.raises(ConfigError):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}", **options)
    assert list(tmp_path.iterdir()) == []


def test_errors_are_nanonas_errors():
    assert issubclass(StorageError, NanonasError)
    assert not issubclass(StorageError, ConfigError)


# --- unreachable servers: StorageError in under 10 s, one line ---------------------------------

UNREACHABLE = {
    "postgresql": ("postgresql://postgres@{}/test", 5432),
    "mysql": ("mysql://root@{}/test", 3306),
    "redis": ("redis://{}/0", 6379),
}


def unreachable_url(kind: str, host: str = "127.0.0.1") -> str:
    """A URL where no server answers: port 1 (closed on any sane machine), or the usual port
    on a non-routable host."""
    template, port = UNREACHABLE[kind]
    return template.format("127.0.0.1:1" if host == "127.0.0.1" else f"{host}:{port}")


@pytest.mark.parametrize("kind", UNREACHABLE)
@pytest.mark.parametrize("host", ["127.0.0.1", "10.255.255.1"])
def test_unreachable_server_fails_fast_in_one_line(kind, host):
    # A connect to the non-routable 10.255.255.1 hangs until the driver's timeout (some
    # sandboxes answer it at once instead). connect_timeout=2 keeps the test quick; the default
    # of 5 s is what the promise of failing within 10 s rests on.
    start = time.monotonic()
    with pytest.raises(StorageError) as error:
        open_storage(unreachable_url(kind, host), connect_timeout=2)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot open storage")


# --- servers: unknown database, wrong password ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "says"), [("postgresql", "does not exist"), ("mysql", "Unknown database")]
)
def test_unknown_database_is_one_line(kind, says):
    url = with_database(server(kind), f"nanonas_missing_{uuid.uuid4().hex[:8]}")
    start = time.monotonic()
    with pytest.raises(StorageError, match=says) as error:
        open_storage(url)
    assert time.monotonic() - start < 10
    assert "\n" not in str(error.value)


def test_wrong_password_is_one_line_and_masked():
    # MariaDB only: the CI PostgreSQL trusts every local login and Redis has no password set,
    # so a wrong password cannot fail there.
    url = sqlalchemy.engine.make_url(server("mysql")).set(password="s3cr3t-wrong")
    url = url.render_as_string(hide_password=False)
    with pytest.raises(StorageError, match="Access denied") as error:
        open_storage(url)
    assert "s3cr3t" not in str(error.value) and "\n" not in str(error.value)


# --- every storage kind: a round trip --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind, tmp_path):
    url = url_for(kind, tmp_path)
    name = unique_name()
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    try:
        trial = study.ask()
        trial.suggest_categorical("block_0", ("conv3x3", "skip"))
        trial.set_user_attr("arch", "w8:conv3x3")
        trial.set_user_attr("params", 1234)
        for epoch, acc in enumerate([0.25, 0.5]):
            trial.set_user_attr("val_acc", [0.25, 0.5][: epoch + 1])
            trial.report(acc, epoch)
            assert not trial.should_prune()
        study.tell(trial, 0.5)

        again = optuna.load_study(study_name=name, storage=open_storage(url))
        (frozen,) = again.trials
        assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.value == 0.5
        assert frozen.user_attrs == {"arch": "w8:conv3x3", "params": 1234, "val_acc": [0.25, 0.5]}
        assert frozen.intermediate_values == {0: 0.25, 1: 0.5}
        assert frozen.params["block_0"] in ("conv3x3", "skip")
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url))
    assert name not in optuna.get_all_study_names(storage=open_storage(url))


@pytest.mark.parametrize("kind", KINDS)
def test_optunas_heartbeats_are_off(kind, tmp_path):
    # nanonas beats on every storage itself (nanonas.study.liveness); Optuna's RDB heartbeats
    # would judge a trial stale while the storage, not its process, was away.
    storage = open_storage(url_for(kind, tmp_path))
    if isinstance(storage, optuna.storages.RDBStorage):
        assert storage.get_heartbeat_interval() is None


def test_sqlite_files_use_wal(tmp_path):
    path = tmp_path / "wal.db"
    open_storage(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# --- a connection killed server-side ----------------------------------------------------------


def _kill_sql(kind: str) -> str:
    if kind == "postgresql":
        return "SELECT pg_terminate_backend({}, 5000)"  # waits until the backend is gone
    return "KILL {}"


def _backend_id(kind: str, dbapi_connection) -> int:
    if kind == "postgresql":
        return dbapi_connection.get_backend_pid()
    return dbapi_connection.thread_id()


def _kill(kind: str, url: str, backend: int) -> None:
    """Kill one connection of the storage from a separate connection, as a DBA or a restart would.

    Only the storage's own connections die, never those of other tests sharing the server.
    """
    engine = sqlalchemy.create_engine(check_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(_kill_sql(kind).format(backend))
    finally:
        engine.dispose()


@contextlib.contextmanager
def _killing_before(kind: str, url: str, storage, statement: str, times: int = 1):
    """Kill the connection (after the pool's ping) just before each of the next `times`
    statements that begin with `statement`, as a server restart would."""
    left = [times]

    def kill(connection, cursor, text, parameters, context, executemany):
        if left[0] > 0 and text.lstrip().startswith(statement):
            left[0] -= 1
            _kill(kind, url, _backend_id(kind, connection.connection.dbapi_connection))

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", kill)
    try:
        yield left
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", kill)


def _ask_tell(study: optuna.Study, value: float) -> None:
    trial = study.ask()
    trial.set_user_attr("arch", "w8:skip")
    study.tell(trial, value)


@pytest.fixture
def server_study(request):
    """(kind, url, storage, study): a new study on the server `request.param`, then deleted."""
    kind = request.param
    url = server(kind)
    storage = open_storage(url)
    name = unique_name()
    study = optuna.create_study(storage=storage, study_name=name)
    yield kind, url, storage, study
    optuna.delete_study(study_name=name, storage=open_storage(url))


@pytest.mark.parametrize("server_study", ["postgresql", "mysql"], indirect=True)
def test_idle_connections_killed_by_the_server_are_replaced_before_use(server_study):
    kind, url, storage, study = server_study
    _ask_tell(study, 1.0)
    pool = storage.engine.pool  # check every pooled connection out at once to learn its id
    held = [storage.engine.raw_connection() for _ in range(pool.checkedin())]
    backends = [_backend_id(kind, c.dbapi_connection) for c in held]
    for connection in held:
        connection.close()
    for backend in backends:
        _kill(kind, url, backend)
    _ask_tell(study, 2.0)  # pool_pre_ping: no error at all
    assert [t.value for t in study.trials] == [1.0, 2.0]


@pytest.mark.parametrize("server_study", ["postgresql", "mysql"], indirect=True)
def test_optuna_re_runs_a_trial_creation_that_failed(server_study):
    """Pins why nanonas.storage.contact raises ConnectionLost: Optuna 5 retries a trial's
    creation after any SQLAlchemy error (meant for deadlocks). If this fails, Optuna stopped
    doing so, and ConnectionLost may no longer be needed."""
    kind, url, storage, study = server_study
    with _killing_before(kind, url, storage, "INSERT INTO trials") as left:
        trial = study.ask()  # the first INSERT died with its connection; Optuna ran it again
    assert left == [0] and trial.number == 0 and len(study.trials) == 1


@pytest.mark.parametrize("server_study", ["postgresql", "mysql"], indirect=True)
def test_with_a_contact_a_dead_connection_raises_and_nothing_is_re_run(server_study):
    kind, url, storage, study = server_study
    contact = Contact(storage, url=url, timeout=30, on_gone=pytest.fail)
    try:
        with (
            _killing_before(kind, url, storage, "INSERT INTO trials") as left,
            pytest.raises(Exception) as error,
        ):
            study.ask()
        assert left == [0]
        assert isinstance(fault(error.value), ConnectionLost)
        assert study.trials == []  # not created twice, nor once: the INSERT never ran
        assert "answered again" in contact.outage()
        _ask_tell(study, 1.0)  # and the storage goes on
    finally:
        contact.close()
    assert [t.value for t in study.trials] == [1.0]


def test_fault_finds_the_storage_error_behind_optunas_wrappers():
    dropped = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone"))
    try:
        try:
            raise dropped
        except sqlalchemy.exc.OperationalError as e:
            raise optuna.exceptions.StorageInternalError("commit failed") from e
    except optuna.exceptions.StorageInternalError as wrapped:
        assert fault(wrapped) is dropped
    try:
        try:
            raise ConnectionLost("reset")
        except ConnectionLost:
            # Optuna's own handler failing after it: only __context__ links the two
            raise AssertionError("Should not reach.")  # noqa: B904
    except AssertionError as after:
        assert isinstance(fault(after), ConnectionLost)
    assert fault(ValueError("bad value")) is None
    assert fault(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup"))) is None
    redis = pytest.importorskip("redis")
    assert fault(redis.exceptions.TimeoutError("silent")) is not None
