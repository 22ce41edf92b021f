"""The lock of a journal file: Optuna's symbolic-link protocol, safe when a signal interrupts it.

    backend = JournalFileBackend(path, lock_obj=SymlinkLock(path))

Why not Optuna's JournalFileSymlinkLock (optuna 5.1): its release renames the link, unlinks the
renamed file, and on any exception in between unlinks it again. nanonas turns SIGTERM and Ctrl-C
into an exception in the main thread (nanonas.workers), and one that lands just after the first
unlink becomes FileNotFoundError: the worker then ends as a crash ("a worker failed") instead of
an interrupted trial that is re-queued. It happened about once in three runs of
tests/test_workers.py's SIGTERM test.

The protocol is Optuna's, so nanonas and a plain Optuna process (a user's `optuna.load_study` on
the same file) exclude each other: the lock is a symbolic link `<journal>.lock` to the journal,
created atomically (on every NFS version too); a lock unchanged for `grace_period` seconds is
broken, since a holder killed outright (SIGKILL, a lost machine) never releases it. Release is
one unlink, so an interrupt lands before or after it, never inside a half-done release.

The public API falls short here: JournalFileBackend documents `lock_obj` as one of Optuna's two
locks, and their base class (BaseJournalFileLock: acquire() and release()) is not exported. So
this class does not subclass it; it offers the same two methods, which the backend calls around
every append (optuna 5.1). tests/storage/test_journal_lock.py pins that: it fails if the backend
ever stops taking this lock.

One window remains: a signal that arrives while the link is being created is handled as the call
returns, so the interrupt is raised with the link made and nobody to release it. Other processes
then break it after `grace_period`: a pause of that length, once, not a crash.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["SymlinkLock", "SUFFIX"]

SUFFIX = ".lock"  # Optuna's name for the link, so that both kinds of process share one lock
_MAX_WAIT = 0.05  # seconds between tries: a write holds the lock for about a millisecond


class SymlinkLock:
    """An exclusive lock on the journal file `path` (a symbolic link beside it)."""

    def __init__(self, path: str, *, grace_period: float = 30.0) -> None:
        if not grace_period > 0:
            raise ValueError(f"grace_period must be > 0 seconds, got {grace_period!r}")
        self._target = path
        self._link = path + SUFFIX
        self.grace_period = float(grace_period)

    def acquire(self) -> bool:
        """Block until this process holds the lock; True."""
        delay, seen, since = 0.001, None, time.monotonic()
        while True:
            try:
                os.symlink(self._target, self._link)
                return True
            except FileExistsError:
                pass
            try:
                st = os.lstat(self._link)
            except FileNotFoundError:
                continue  # released just now: try again at once
            # A new holder makes a new link (a new inode or time): the wait restarts with it.
            if (st.st_ino, st.st_mtime_ns) != seen:
                seen, since = (st.st_ino, st.st_mtime_ns), time.monotonic()
            elif time.monotonic() - since > self.grace_period:
                self._break(seen)
                continue
            time.sleep(delay)
            delay = min(2 * delay, _MAX_WAIT)

    def release(self) -> None:
        """Give the lock up; RuntimeError if this process did not hold it (it was broken)."""
        try:
            os.unlink(self._link)
        except FileNotFoundError:
            raise RuntimeError(f"did not hold the lock {self._link}") from None

    def _break(self, seen: tuple[int, int]) -> None:
        # Only the link judged stale: another waiter may have broken it and made its own since
        # (a narrower window than unlinking blindly; a link has no compare-and-delete).
        try:
            st = os.lstat(self._link)
            if (st.st_ino, st.st_mtime_ns) != seen:
                return
            os.unlink(self._link)
        except FileNotFoundError:
            return  # its holder, or another waiter, was first
        print(
            f"nanonas: warning: broke the lock {self._link}: unchanged for "
            f"{self.grace_period:g} s (its holder was killed)",
            file=sys.stderr,
        )
