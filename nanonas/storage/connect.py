"""Open the storage a study lives in: connect, fail in one line, surface faults quickly.

    storage = open_storage("postgresql://user@db-host/nanonas")  # connects now, or one-line error
    study = optuna.create_study(storage=storage, study_name="s1", load_if_exists=True)

What a storage string may be, and which driver it gets, is nanonas.storage.urls's concern; this
file opens what it names. A journal file's lock is a symbolic link (Optuna's
protocol, in nanonas.storage.journal_lock so that a signal cannot break it), which is atomic on
every NFS version, so workers on several machines can share a file on NFS, where SQLite's fcntl
locks are unreliable.

Heartbeats are nanonas's own (nanonas.study.liveness), the same on every storage, so Optuna's
RDB heartbeats stay off.

SQLite files are switched to WAL mode: a nanonas trial makes about 50 commits, and in WAL each
costs one fsync instead of several (3 to 6 times faster per trial, measured on the development
machine), and readers such as optuna-dashboard no longer block the workers. WAL needs every
process on one machine, as SQLite does anyway; across machines use a server or a journal file.

Faults: nothing here retries, and no Optuna method is wrapped. The engine is set up so that a
fault surfaces quickly as an error, which nanonas.study.run handles around `study.optimize`
(wait for the storage, end or re-tell the trial in flight, go on):
- a pooled connection the server dropped while it sat idle (a restart, an idle timeout) is
  replaced before use (`pool_pre_ping`: one more round trip per checkout; its cost is measured
  in benchmarks/results/storage_overhead.md);
- new connections give up after `connect_timeout`; TCP keepalives notice a dead peer on an idle
  PostgreSQL link; PyMySQL gives up on a read or write silent for `reconnect_timeout`;
- a PostgreSQL statement silent for that long is cut by nanonas.storage.contact, since libpq has
  no client-side read timeout.
`fault(error)` says whether an error is such a fault. Redis is written through
nanonas.storage.redis_journal: no blind retries, and a silent server raises after
`reconnect_timeout`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import journal

from nanonas.errors import ConfigError, DiskFull, NanonasError
from nanonas.storage.disk import disk_full, where_full
from nanonas.storage.journal_lock import SymlinkLock
from nanonas.storage.urls import Target, is_sqlite, mask, parse, reason

__all__ = ["ConnectionLost", "StorageError", "fault", "open_storage"]

_SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for SQLite's lock before "database is locked"
# libpq keepalives: probe a link idle for 10 s every 5 s; 3 unanswered probes close it.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class StorageError(NanonasError):
    """The storage is unreachable, refuses the login, or has no such database (one line)."""


class ConnectionLost(Exception):  # noqa: N818 (a fault, not a bug: it is settled, not shown)
    """A database connection died under a statement. nanonas.storage.contact raises it in place
    of SQLAlchemy's error, which is chained, because Optuna re-runs a trial's creation after any
    SQLAlchemy error (for deadlocks): after a lost answer to a COMMIT that applied, the re-run
    would create a second trial. This error is not SQLAlchemy's, so nothing re-runs blindly."""


def open_storage(
    url: str,
    *,
    connect_timeout: int = 5,
    reconnect_timeout: float = 60.0,
) -> optuna.storages.BaseStorage:
    """Check `url`, connect, and return the storage; fail within about 2 x connect_timeout.

    connect_timeout: seconds to wait for a server to answer a new connection.
    reconnect_timeout: seconds a read or write may stay silent before it fails (PyMySQL's own
        timeouts; PostgreSQL's through nanonas.storage.contact).

    Raises ConfigError for a bad URL or option (nothing is touched) and StorageError when the
    server is unreachable, refuses the login or has no such database.
    """
    _check_options(connect_timeout, reconnect_timeout)
    target = parse(url)
    if target.kind == "journal":
        return _open_journal_file(target.url)
    if target.kind == "redis":
        return _open_redis(
            target.url, connect_timeout=connect_timeout, reconnect_timeout=reconnect_timeout
        )
    return _open_rdb(target, connect_timeout=connect_timeout, reconnect_timeout=reconnect_timeout)


def fault(error: BaseException) -> BaseException | None:
    """The storage fault behind `error` (a dropped, refused, silent or deadlocked connection),
    or None when `error` is something else.

    Optuna wraps SQLAlchemy errors raised inside a session in StorageInternalError, and an
    error in Optuna's own error handling chains the first one, so the whole chain is searched.
    OperationalError covers lost connections, a server that refuses connections while it
    restarts, statement timeouts and deadlock victims, whose transaction was rolled back.
    """
    if disk_full(error) is not None:
        return None  # no outage: a retry would wait for ever (nanonas.storage.disk)
    redis_errors: tuple[type[BaseException], ...] = ()
    with contextlib.suppress(ImportError):
        import redis

        redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionLost):
            return current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and (
            current.connection_invalidated or isinstance(current, sqlalchemy.exc.OperationalError)
        ):
            return current
        if isinstance(current, redis_errors):
            return current
        current = current.__cause__ or current.__context__
    return None


def _check_options(connect_timeout: Any, reconnect_timeout: Any) -> None:
    if (
        isinstance(connect_timeout, bool)
        or not isinstance(connect_timeout, int)
        or connect_timeout <= 0
    ):
        raise ConfigError(
            f"connect-timeout must be a positive integer (seconds), got {connect_timeout!r}"
        )
    if (
        isinstance(reconnect_timeout, bool)
        or not isinstance(reconnect_timeout, (int, float))
        or not 0 < reconnect_timeout < float("inf")
    ):
        raise ConfigError(
            f"reconnect-timeout must be a positive number of seconds, got {reconnect_timeout!r}"
        )


def _open_rdb(
    target: Target, *, connect_timeout: int, reconnect_timeout: float
) -> optuna.storages.RDBStorage:
    url = target.url
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT}
        if target.sqlite_file is not None:
            _use_wal(target.sqlite_file, url)
    else:
        engine_kwargs["pool_pre_ping"] = True
        # connect_args win over URL options in SQLAlchemy, so respect what the URL sets.
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        args: dict[str, Any] = {"connect_timeout": connect_timeout}
        if "pymysql" in url.split("://", 1)[0]:
            silent = max(1, math.ceil(reconnect_timeout))  # PyMySQL wants whole seconds
            args |= {"read_timeout": silent, "write_timeout": silent}
        elif "psycopg" in url.split("://", 1)[0]:
            # Sent data unacknowledged for that long (a dead host, a black-holed route) closes
            # the link; a link that acknowledges but never answers is the watchdog's.
            args |= _KEEPALIVES | {"tcp_user_timeout": math.ceil(reconnect_timeout * 1000)}
        engine_kwargs["connect_args"] = {k: v for k, v in args.items() if k not in query}
        _probe(url, connect_timeout)
    try:
        with _quiet_experimental():
            # Optuna's heartbeats stay off: nanonas.study.liveness beats on every storage.
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except sqlalchemy.exc.SQLAlchemyError as e:
        _refuse_if_disk_full(e, url)
        # `from None`: the driver's exception chain can quote connection details.
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None
    except RuntimeError as e:  # Optuna: the tables were made by an incompatible Optuna version
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None


def _use_wal(path: str, url: str) -> None:
    """Switch the SQLite file at `path` to WAL mode (it remembers; see the module docstring)."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        _refuse_if_disk_full(e, url)
        raise StorageError(f"cannot open storage {mask(url)}: {e}") from None


def _refuse_if_disk_full(error: BaseException, url: str) -> None:
    """A full disk is said as such, with the file and its free space (exit status 1)."""
    if disk_full(error) is not None:
        raise DiskFull(f"disk full: {where_full(url)}; nothing was written") from None


def _probe(url: str, connect_timeout: int) -> None:
    """Connect once with strict timeouts, so that an unreachable server fails fast and in one line.

    PyMySQL's connect_timeout covers only the TCP connect: a host that accepts the connection
    but never answers would hang in the handshake, so the probe also bounds reads and writes,
    which the storage itself must not (a large study's query may take long).
    """
    args: dict[str, Any] = {"connect_timeout": connect_timeout}
    if "pymysql" in url.split("://", 1)[0]:
        args |= {"read_timeout": connect_timeout, "write_timeout": connect_timeout}
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=args)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None
    finally:
        engine.dispose()


def _open_redis(
    url: str, *, connect_timeout: int, reconnect_timeout: float
) -> optuna.storages.BaseStorage:
    import redis  # an optional extra: nanonas[redis]
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from nanonas.storage.redis_journal import RedisJournal

    # The probe does not retry: redis-py's default of 3 retries would quadruple the wait.
    probe = redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        probe.ping()
    except redis.exceptions.RedisError as e:
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None
    finally:
        probe.close()
    try:
        with _quiet_experimental():
            backend = RedisJournal(url, connect_timeout=connect_timeout, timeout=reconnect_timeout)
            return journal.JournalStorage(backend)
    except redis.exceptions.RedisError as e:
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None


def _open_journal_file(path: str) -> optuna.storages.BaseStorage:
    # A symlink is atomic on every NFS version; Windows needs a privilege for one, so there the
    # lock is an exclusively created file instead (atomic on NFSv3 and later).
    lock = journal.JournalFileOpenLock(path) if os.name == "nt" else SymlinkLock(path)
    try:
        with _quiet_experimental():
            backend = journal.JournalFileBackend(path, lock_obj=lock)
            return journal.JournalStorage(backend)
    except OSError as e:
        _refuse_if_disk_full(e, path)
        raise StorageError(f"cannot open journal file {path!r}: {e.strerror or e}") from None
    except (ValueError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"cannot read journal file {path!r}: {e}") from None


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for journals: nanonas chose them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
