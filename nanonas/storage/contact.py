"""Is the storage answering? One tracker per process, and a watchdog for when it never does again.

    contact = Contact(storage, timeout=60, on_gone=gone)  # starts the watchdog thread
    contact.retry(lambda: records.write_curve(trial, curve))  # an idempotent call, until it lands
    contact.wait(probe)                                   # until probe() answers
    contact.outage()                                      # one line on what went wrong, or None
    contact.close()

Every storage call a caller makes through `attempt`, `retry` or `wait` says whether the storage
answered; on an RDB storage every SQL statement does too, through SQLAlchemy's public engine
events. The watchdog thread touches no storage. Once a second it checks:

- A statement silent for `timeout` seconds has its socket shut down. libpq has no client-side
  read timeout, so on a link that stays open but carries nothing (a frozen proxy, a stuck load
  balancer) the call would otherwise wait forever; now it fails, and the caller's fault
  handling takes over as for a dropped connection.
- When nothing has answered since a call began to fail or to wait, `timeout` seconds ago, the
  storage is gone: `on_gone(why)` runs once, from the watchdog thread. It is meant to end the
  process (nanonas.study.run prints one line and exits), because the main thread may be stuck
  in a driver call that no Python code can interrupt.

Only faults count (nanonas.storage.connect.fault); any other error passes through at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import optuna
import sqlalchemy

from nanonas.storage.connect import ConnectionLost, fault
from nanonas.storage.urls import mask, reason

__all__ = ["Contact"]

T = TypeVar("T")

_TICK = 0.5  # seconds between the watchdog's checks
_MAX_BACKOFF = 2.0  # seconds between two tries of a call that keeps failing
# A fault this soon after an outage ended, that itself ends this quickly, is that outage's
# tail: a connection it broke, used only now (checked out across it, so no pre-ping saw it),
# or a reconnect caught in its last moments. It gets no line of its own.
_AFTERMATH = 10.0  # seconds after the end of the last outage
_BLIP = 2.0  # seconds the tail itself lasts at most


class Contact:
    """Tracks when this process last heard from `storage`; see the module docstring."""

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        *,
        url: str,
        timeout: float,
        on_gone: Callable[[str], None],
    ) -> None:
        self.url = url  # for messages; masked whenever shown
        self.timeout = float(timeout)
        self._on_gone = on_gone
        self._lock = threading.Lock()
        self._last_ok = time.monotonic()
        self._pending: dict[int, float] = {}  # id of a call in progress -> when it began
        self._sockets: dict[int, int] = {}  # id of an SQL statement in progress -> its socket
        self._failing_since: float | None = None  # first fault since the last answer
        self._why = ""  # the first fault's reason, one line
        self._outages: list[tuple[str, float]] = []  # (why, seconds) since outage() was asked
        self._calm_start = float("-inf")  # when the last outage ended
        self._gone = False
        self._stop = threading.Event()
        self._engine = getattr(storage, "engine", None)  # RDBStorage's SQLAlchemy engine
        if self._engine is not None:
            sqlalchemy.event.listen(self._engine, "before_cursor_execute", self._before)
            sqlalchemy.event.listen(self._engine, "after_cursor_execute", self._after)
            sqlalchemy.event.listen(self._engine, "handle_error", self._error)
            # When a connection that died is returned to the pool, SQLAlchemy's rollback on it
            # fails and is logged with a traceback; the fault is already this tracker's.
            pool = type(self._engine.pool)
            self._pool_logger = logging.getLogger(f"{pool.__module__}.{pool.__name__}")
            self._pool_logger.addFilter(self._not_dead_reset)
        self._thread = threading.Thread(target=self._watch, name="nanonas-contact", daemon=True)
        self._thread.start()

    # --- what callers report ------------------------------------------------------------------

    def ok(self) -> None:
        """The storage answered."""
        with self._lock:
            self._last_ok = time.monotonic()
            if self._failing_since is not None:
                seconds = self._last_ok - self._failing_since
                tail = self._failing_since - self._calm_start < _AFTERMATH and seconds < _BLIP
                if not tail:
                    self._outages.append((self._why, seconds))
                self._failing_since = None
                self._calm_start = self._last_ok

    def failed(self, error: BaseException, *, since: float | None = None) -> str:
        """A call failed with the fault `error` (began at `since`); returns its one-line reason."""
        why = reason(error, self.url)
        with self._lock:
            if since is not None and since < self._last_ok:
                # It began before the storage last answered: the end of an outage already
                # over (a connect that timed out late), not a new one worth a line of its own.
                return why
            if self._failing_since is None:
                self._failing_since = time.monotonic() if since is None else since
                self._why = why
        return why

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """One storage call: pending while it runs, then an answer or a fault."""
        key = object()
        start = time.monotonic()
        with self._lock:
            self._pending[id(key)] = start
        try:
            yield
        except Exception as e:
            cause = fault(e)
            if cause is not None:
                self.failed(cause, since=start)
            raise
        else:
            self.ok()
        finally:
            with self._lock:
                self._pending.pop(id(key), None)

    def retry(self, call: Callable[[], T]) -> T:
        """`call()` until it returns, for calls that may safely run twice (reads, and writes
        that set a value). A fault is retried with backoff; the watchdog ends the wait."""
        delay = 0.1
        while True:
            try:
                with self.attempt():
                    return call()
            except Exception as e:
                if fault(e) is None:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, _MAX_BACKOFF)

    def wait(self, probe: Callable[[], Any]) -> None:
        """Until `probe()` answers (the watchdog ends the process if it never does)."""
        self.retry(probe)

    def outage(self) -> str | None:
        """One line on the outages since the last call (None if there were none)."""
        with self._lock:
            outages, self._outages = self._outages, []
        if not outages:
            return None
        why, seconds = outages[0]
        line = f"storage {mask(self.url)}: {why}; it answered again after {seconds:.1f} s"
        if len(outages) > 1:
            line += f" (and {len(outages) - 1} more outages, {sum(s for _, s in outages):.1f} s)"
        return line

    def calm_for(self) -> float:
        """Seconds since this process last saw the storage fail (inf if it never did)."""
        with self._lock:
            if self._failing_since is not None:
                return 0.0
            return time.monotonic() - self._calm_start

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._engine is not None:
            sqlalchemy.event.remove(self._engine, "before_cursor_execute", self._before)
            sqlalchemy.event.remove(self._engine, "after_cursor_execute", self._after)
            sqlalchemy.event.remove(self._engine, "handle_error", self._error)
            self._pool_logger.removeFilter(self._not_dead_reset)

    # --- SQLAlchemy engine events -------------------------------------------------------------

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        with self._lock:
            self._pending[id(cursor)] = time.monotonic()
            fileno = getattr(dbapi, "fileno", None)
            if callable(fileno):
                self._sockets[id(cursor)] = fileno()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with self._lock:
            self._pending.pop(id(cursor), None)
            self._sockets.pop(id(cursor), None)
        self.ok()

    def _error(self, context: Any) -> None:
        cursor = getattr(context, "cursor", None)  # none in a pool ping
        with self._lock:
            start = self._pending.pop(id(cursor), None) if cursor is not None else None
            self._sockets.pop(id(cursor), None)
        if not isinstance(context.original_exception, Exception):
            return  # Ctrl-C or SIGTERM under a statement: not a fault, and it must go on up
        if context.is_pre_ping:
            # A pooled connection found dead before use (the server restarted, or closed it
            # while idle) is replaced by the pool: no outage, unless the new connect fails too,
            # which comes here again as a fault of its own. After an outage each dead pooled
            # connection used to count as one more outage of 0 s, with a line of its own.
            return
        if context.is_disconnect or isinstance(
            context.sqlalchemy_exception, sqlalchemy.exc.OperationalError
        ):
            self.failed(context.original_exception, since=start)
        # A dead connection under a statement: raised as nanonas's own error (SQLAlchemy chains
        # it and still invalidates the connection), so Optuna re-runs nothing; see ConnectionLost.
        # The pool's pre-ping must see SQLAlchemy's error to replace the connection.
        if context.is_disconnect:
            raise ConnectionLost(reason(context.original_exception, self.url))

    def _not_dead_reset(self, record: logging.LogRecord) -> bool:
        """False for the pool's log of a failed rollback on a connection that died."""
        dbapi = self._engine.dialect.loaded_dbapi
        error = record.exc_info[1] if record.exc_info else None
        return not (
            record.getMessage().startswith("Exception during reset")
            and isinstance(error, (dbapi.OperationalError, dbapi.InterfaceError, OSError))
        )

    # --- the watchdog -------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(_TICK):
            now = time.monotonic()
            with self._lock:
                stalled = [
                    fd
                    for key, fd in self._sockets.items()
                    if now - self._pending.get(key, now) > self.timeout
                ]
                starts = [s for s in self._pending.values() if s > self._last_ok - 1e-9]
                if self._failing_since is not None:
                    starts.append(self._failing_since)
                trouble = min(starts, default=None)
            for fd in stalled:
                _shut(fd)
            if trouble is not None and now - trouble > self.timeout and not self._gone:
                self._gone = True
                silent = f"no answer for {now - trouble:.0f} s"
                self._on_gone(f"{self._why}; {silent}" if self._why else silent)
                return


def _shut(fd: int) -> None:
    """Shut down the socket behind `fd`, so that a call blocked on it fails at once. The socket
    stays open (its owner closes it); a duplicate descriptor is used, and closed again."""
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()
