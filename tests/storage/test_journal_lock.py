"""nanonas.storage.journal_lock: the journal file's lock, under signals and beside Optuna's own."""

from __future__ import annotations

import os
import signal
import threading
import time

import optuna
import pytest
from optuna.storages import journal

from nanonas.storage.journal_lock import SUFFIX, SymlinkLock


def _blocked(call, *, hold: float = 0.3):
    """Start `call` in a thread; assert it is still waiting after `hold` seconds."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (call(), done.set()), daemon=True)
    thread.start()
    assert not done.wait(hold), "it did not wait for the lock"
    return done


def test_the_backend_takes_this_lock_around_every_write(tmp_path):
    # Pins optuna 5.1: JournalFileBackend takes any lock_obj with acquire()/release() (their
    # base class is not exported). If it stopped using ours, the write would not wait.
    path = str(tmp_path / "s.log")
    storage = journal.JournalStorage(journal.JournalFileBackend(path, lock_obj=SymlinkLock(path)))
    holder = SymlinkLock(path)
    holder.acquire()
    done = _blocked(lambda: optuna.create_study(storage=storage, study_name="s"))
    holder.release()
    assert done.wait(10)
    assert not os.path.lexists(path + SUFFIX)


@pytest.mark.parametrize("first", ["optuna", "nanonas"])
def test_optunas_lock_and_this_one_exclude_each_other(tmp_path, first):
    path = str(tmp_path / "s.log")
    open(path, "w").close()
    optunas, ours = journal.JournalFileSymlinkLock(path), SymlinkLock(path)
    holder, waiter = (optunas, ours) if first == "optuna" else (ours, optunas)
    holder.acquire()
    done = _blocked(waiter.acquire)
    holder.release()
    assert done.wait(10)
    waiter.release()


def test_an_interrupt_anywhere_is_only_ever_the_interrupt(tmp_path):
    # nanonas raises its SIGTERM (and Python its Ctrl-C) in the main thread wherever it is. A
    # timer interrupts acquire/release cycles at random points for 2 s: only KeyboardInterrupt
    # may come out (Optuna's own lock turned some into FileNotFoundError), and the next write
    # gets the lock (at worst after the grace period, if an interrupt left it held).
    lock = SymlinkLock(str(tmp_path / "s.log"), grace_period=0.05)
    others: list[BaseException] = []
    interrupts = cycles = 0
    armed = False  # only inside the try below: an interrupt elsewhere would end the test run

    def interrupt(*_):
        nonlocal armed
        if armed:
            armed = False
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
    end = time.monotonic() + 2
    try:
        while time.monotonic() < end:
            try:
                armed = True
                lock.acquire()  # as Optuna's backend takes it (get_lock_file)
                try:
                    pass  # the append
                finally:
                    lock.release()
                armed = False
                cycles += 1
            except KeyboardInterrupt:
                interrupts += 1
                lock.acquire()  # the interrupted process's next write, uninterrupted
                lock.release()
            except BaseException as e:  # noqa: BLE001 - what this test is about
                armed = False
                others.append(e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # Many interrupts, at many points; uninterrupted cycles too. (Each interrupt that left the
    # lock held costs a grace period, so in a loaded test session cycles can be few.)
    assert interrupts >= 20 and cycles >= 5, (interrupts, cycles)
    assert others == []
    lock.acquire()  # still usable
    lock.release()


def test_a_lock_whose_holder_was_killed_is_broken_after_the_grace_period(tmp_path, capsys):
    path = str(tmp_path / "s.log")
    os.symlink(path, path + SUFFIX)  # what a holder killed by SIGKILL leaves
    start = time.monotonic()
    SymlinkLock(path, grace_period=0.5).acquire()
    assert 0.5 <= time.monotonic() - start < 5
    assert "broke the lock" in capsys.readouterr().err


def test_releasing_a_lock_not_held_and_a_bad_grace_period_are_errors(tmp_path):
    with pytest.raises(RuntimeError, match="did not hold"):
        SymlinkLock(str(tmp_path / "s.log")).release()
    with pytest.raises(ValueError, match="grace_period"):
        SymlinkLock(str(tmp_path / "s.log"), grace_period=0)
