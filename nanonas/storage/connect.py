"""Open the storage a study lives in: connect, fail in one line, heartbeats, reconnection.

    storage = open_storage("postgresql://user@db-host/nanonas")  # connects now, or one-line error
    study = optuna.create_study(storage=storage, study_name="s1", load_if_exists=True)

What a storage string may be, and which driver it gets, is nanonas.storage.urls's concern; this
file opens what it names. A journal file's lock is a symbolic link (Optuna's
JournalFileSymlinkLock), which is atomic on every NFS version, so workers on several machines
can share a file on NFS, where SQLite's fcntl locks are unreliable.

Heartbeats: only RDBStorage records them in Optuna 5.0 (JournalStorage does not implement
BaseHeartbeat), and only inside `study.optimize`, not with ask/tell. There a worker that dies
has its running trial failed after `grace_period` seconds without a heartbeat and, through
`retry_callback`, re-queued with the same parameters. On the journal storages a dead worker's
trial stays RUNNING for good.

SQLite files are switched to WAL mode: a nanonas trial makes about 50 commits, and in WAL each
costs one fsync instead of several (3 to 6 times faster per trial, measured on the development
machine), and readers such as optuna-dashboard no longer block the workers. WAL needs every
process on one machine, as SQLite does anyway; across machines use a server or a journal file.

Reconnection: on PostgreSQL and MySQL an operation that fails because its connection dropped
(the server restarted, an idle connection timed out, someone killed it), because the server
still refuses connections while it restarts, or because the database chose it as a deadlock
victim, is retried with backoff for `reconnect_timeout` seconds (each retry logged as a
warning), then raises StorageError. SQLAlchemy then discards every pooled connection older than
the drop, so a restart costs one retry. This replaces `pool_pre_ping`, which costs one more
round trip on every storage call (a fifth of a nanonas trial's round trips, measured); with
reconnect_timeout=0 the ping is used instead. The storage stays an RDBStorage subclass, so
Optuna still caches it and still runs its heartbeats. A write whose connection dropped during
its commit may already have been applied; its retry then fails with Optuna's own error (for
example a trial that is already finished). SQLite is not retried: its 30 s busy timeout already
waits for the lock, and "database is locked" past that is a real sign of too many writers. The
Redis journal retries through redis-py's own default policy.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import journal

from nanonas.errors import ConfigError, NanonasError
from nanonas.storage.urls import Target, is_sqlite, mask, parse, reason

__all__ = ["StorageError", "open_storage", "retry_callback"]

_logger = logging.getLogger(__name__)

_SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for SQLite's lock before "database is locked"


class StorageError(NanonasError):
    """The storage is unreachable, refuses the login, or has no such database (one line)."""


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int | None = 2,
    connect_timeout: int = 5,
    reconnect_timeout: float = 60.0,
) -> optuna.storages.BaseStorage:
    """Check `url`, connect, and return the storage; fail within about 2 x connect_timeout.

    heartbeat_interval: seconds between heartbeats of a running trial (RDB storages, inside
        study.optimize only; journal storages ignore it); None turns heartbeats off.
    grace_period: seconds without a heartbeat before a running trial is failed; None: 2 x
        heartbeat_interval.
    max_retry: how often a trial failed for a lost heartbeat is re-queued; 0 never, None always.
    connect_timeout: seconds to wait for a server to answer a new connection.
    reconnect_timeout: seconds a PostgreSQL/MySQL operation keeps retrying a dropped connection
        or a deadlock before it raises StorageError; 0 never retries.

    Raises ConfigError for a bad URL or option (nothing is touched) and StorageError when the
    server is unreachable, refuses the login or has no such database.
    """
    _check_options(heartbeat_interval, grace_period, max_retry, connect_timeout, reconnect_timeout)
    target = parse(url)
    if target.kind == "journal":
        return _open_journal_file(target.url)
    if target.kind == "redis":
        return _open_redis(target.url, connect_timeout=connect_timeout)
    return _open_rdb(
        target,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        max_retry=max_retry,
        connect_timeout=connect_timeout,
        reconnect_timeout=reconnect_timeout,
    )


def retry_callback(*, max_retry: int | None) -> Callable[[optuna.Study, Any], None]:
    """Optuna's callback that re-queues a heartbeat-stale trial, at most `max_retry` times.

    Optuna 4.9 renamed RetryFailedTrialCallback to RetryHeartbeatStaleTrialCallback; whichever
    this Optuna has is used. A retried trial's user attrs say nothing of the retry; Optuna keeps
    the original trial number in the system attr "failed_trial".
    """
    _check_max_retry(max_retry)

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    cls = cls or optuna.storages.RetryFailedTrialCallback
    with _quiet_experimental():
        return cls(max_retry=max_retry)


def _check_options(
    heartbeat_interval: Any,
    grace_period: Any,
    max_retry: Any,
    connect_timeout: Any,
    reconnect_timeout: Any,
) -> None:
    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if heartbeat_interval is not None and not positive_int(heartbeat_interval):
        raise ConfigError(
            f"heartbeat-interval must be a positive integer (seconds) or None, "
            f"got {heartbeat_interval!r}"
        )
    if grace_period is not None:
        if not positive_int(grace_period):
            raise ConfigError(f"grace-period must be a positive integer, got {grace_period!r}")
        if heartbeat_interval is not None and grace_period <= heartbeat_interval:
            # A live trial would be failed between two of its own heartbeats.
            raise ConfigError(
                f"grace-period ({grace_period} s) must exceed heartbeat-interval "
                f"({heartbeat_interval} s)"
            )
    _check_max_retry(max_retry)
    if not positive_int(connect_timeout):
        raise ConfigError(
            f"connect-timeout must be a positive integer (seconds), got {connect_timeout!r}"
        )
    if (
        isinstance(reconnect_timeout, bool)
        or not isinstance(reconnect_timeout, (int, float))
        or not 0 <= reconnect_timeout < float("inf")
    ):
        raise ConfigError(
            f"reconnect-timeout must be a non-negative number of seconds, got {reconnect_timeout!r}"
        )


def _check_max_retry(max_retry: Any) -> None:
    if max_retry is not None and (
        isinstance(max_retry, bool) or not isinstance(max_retry, int) or max_retry < 0
    ):
        raise ConfigError(f"max-retry must be a non-negative integer or None, got {max_retry!r}")


def _open_rdb(
    target: Target,
    *,
    heartbeat_interval: int | None,
    grace_period: int | None,
    max_retry: int | None,
    connect_timeout: int,
    reconnect_timeout: float,
) -> optuna.storages.RDBStorage:
    url = target.url
    sqlite = is_sqlite(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": not sqlite and reconnect_timeout == 0}
    if sqlite:
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT}
        if target.sqlite_file is not None:
            _use_wal(target.sqlite_file, url)
        cls: type[optuna.storages.RDBStorage] = optuna.storages.RDBStorage
    else:
        # connect_args win over URL options in SQLAlchemy, so respect a timeout the URL sets.
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        if "connect_timeout" not in query:
            engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout}
        _probe(url, connect_timeout)
        cls = _ReconnectingRDBStorage

    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat_interval}
    if heartbeat_interval is not None:
        kwargs["grace_period"] = grace_period or 2 * heartbeat_interval
        if max_retry != 0:
            params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
            name = "heartbeat_stale_trial_callback"  # Optuna >= 4.9
            name = name if name in params else "failed_trial_callback"
            kwargs[name] = retry_callback(max_retry=max_retry)
    try:
        with _quiet_experimental():
            storage = cls(url, engine_kwargs=engine_kwargs, **kwargs)
    except sqlalchemy.exc.SQLAlchemyError as e:
        # `from None`: the driver's exception chain can quote connection details.
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None
    except RuntimeError as e:  # Optuna: the tables were made by an incompatible Optuna version
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None
    if not sqlite:
        storage._reconnect_timeout = float(reconnect_timeout)
    return storage


def _use_wal(path: str, url: str) -> None:
    """Switch the SQLite file at `path` to WAL mode (it remembers; see the module docstring)."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        raise StorageError(f"cannot open storage {mask(url)}: {e}") from None


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


def _open_redis(url: str, *, connect_timeout: int) -> optuna.storages.BaseStorage:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

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
    # The backend builds its client from the URL alone (again after pickling), so the connect
    # timeout rides in the URL; redis-py's default retries then cover a restarting server.
    parts = urllib.parse.urlsplit(url)
    if "socket_connect_timeout" not in urllib.parse.parse_qs(parts.query):
        query = "&".join(filter(None, [parts.query, f"socket_connect_timeout={connect_timeout}"]))
        url = urllib.parse.urlunsplit(parts._replace(query=query))
    try:
        with _quiet_experimental():
            backend = journal.JournalRedisBackend(url)
            return journal.JournalStorage(backend)
    except redis.exceptions.RedisError as e:
        raise StorageError(f"cannot open storage {mask(url)}: {reason(e, url)}") from None


def _open_journal_file(path: str) -> optuna.storages.BaseStorage:
    # A symlink is atomic on every NFS version; Windows needs a privilege for one, so there the
    # lock is an exclusively created file instead (atomic on NFSv3 and later).
    lock_class = journal.JournalFileOpenLock if os.name == "nt" else journal.JournalFileSymlinkLock
    try:
        with _quiet_experimental():
            backend = journal.JournalFileBackend(path, lock_obj=lock_class(path))
            return journal.JournalStorage(backend)
    except OSError as e:
        raise StorageError(f"cannot open journal file {path!r}: {e.strerror or e}") from None
    except (ValueError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"cannot read journal file {path!r}: {e}") from None


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for heartbeats and journals: nanonas chose them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# --- reconnecting RDBStorage -----------------------------------------------------------------

_local = threading.local()  # how deep this thread is in retried storage calls


def _transient(error: BaseException) -> sqlalchemy.exc.DBAPIError | None:
    """The driver error that makes `error` worth a retry (a dropped connection or a deadlock).

    Optuna wraps SQLAlchemy errors raised inside a session in StorageInternalError, so the
    cause chain is searched. OperationalError covers lost connections, a server that refuses
    connections while it restarts, and deadlock victims, whose transaction was rolled back.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            if current.connection_invalidated or isinstance(
                current, sqlalchemy.exc.OperationalError
            ):
                return current
            return None
        current = current.__cause__ or current.__context__
    return None


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):  # an outer call of this thread already retries
            return method(self, *args, **kwargs)
        _local.depth = 1
        try:
            return _call_with_retry(self, method, args, kwargs)
        finally:
            _local.depth = 0

    return wrapper


def _call_with_retry(storage: Any, method: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    timeout = storage._reconnect_timeout
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return method(storage, *args, **kwargs)
        except Exception as e:
            cause = _transient(e)
            if cause is None:
                raise
            why = reason(cause, storage.url)
            if time.monotonic() + delay > deadline:
                raise StorageError(
                    f"storage {mask(storage.url)} failed ({why}) and did not recover "
                    f"within reconnect-timeout {timeout:g} s"
                ) from None
            _logger.warning(
                "storage %s: %s failed (%s); retrying in %.1f s",
                mask(storage.url),
                method.__name__,
                why,
                delay,
            )
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


class _ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """An RDBStorage whose database calls retry transient failures (see the module docstring).

    A subclass, not a wrapper: Optuna caches only RDBStorage instances (_CachedStorage) and runs
    heartbeats only for storages that are BaseHeartbeat. It pickles like its base class.
    """

    _reconnect_timeout: float = 60.0  # open_storage sets it per instance


# Every storage operation Optuna defines (listed from BaseStorage, so that one added in a later
# Optuna is covered too), and the RDB-only calls that the heartbeat and the cache make.
for _name in [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")] + [
    "record_heartbeat",
    "_get_stale_trial_ids",
    "_get_trials",
]:
    _method = getattr(optuna.storages.RDBStorage, _name, None)
    if callable(_method) and _name != "remove_session":
        setattr(_ReconnectingRDBStorage, _name, _retrying(_method))
del _name, _method
