"""Heartbeats of the running trial, and the retry of trials whose process died, on every storage.

    liveness = Liveness(study, contact, interval=60, current=lambda: objective.trial)
    liveness.start()          # a thread: beat the current trial, fail and re-queue stale ones
    liveness.fail_stale()     # also before each trial, so that a retry is picked up at once
    liveness.stop()

Optuna's heartbeats exist only on RDB storages, run only inside `study.optimize`, end with their
thread at the first dropped connection, and judge a trial stale even when it was the storage,
not the trial's process, that was away. nanonas beats on every storage (PostgreSQL, MySQL,
SQLite, Redis, journal files) through public calls only:

- While a trial runs, a thread of its process writes the trial's `alive` attribute (time.time())
  every `interval` seconds; the objective writes the first one before anything else.
- Every worker, before each trial and at every beat, fails (`study.tell(number, state=FAIL)`) any
  RUNNING trial whose last beat, or its start if it never beat, is older than `grace` seconds,
  and re-queues it: a WAITING trial with the same parameters, which the next `ask` of any worker
  picks up. The retry carries the system attributes Optuna's own retry callback writes
  (`failed_trial`: the first trial of the chain; `retry_history`), so Optuna's
  `RetryHeartbeatStaleTrialCallback.retried_trial_number` reads it; unlike that callback it does
  not copy the failed attempt's user attributes (its curve and reasons are not the retry's). A
  chain is retried at most `max_retry` times. The tell is Optuna's check-and-set: when two
  workers judge one trial, only the one whose tell lands re-queues it.
- A process that lost the storage itself within the last `grace` seconds judges nobody: the
  beats it would call missing could not have landed either. So after an outage every owner has
  `grace` seconds to beat again before anyone fails its trial.

Beats are wall-clock times read by other machines: keep the workers' clocks within a few seconds
of each other (NTP does), far below the grace period.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanonas import records
from nanonas.storage import Contact, disk_full, fault

__all__ = ["Liveness", "requeue", "retry_of"]

MAX_RETRY = 2  # how often one architecture's trial is retried after its process died


class Liveness:
    """Beats for the trial `current()` returns; fails and re-queues stale trials of the study."""

    def __init__(
        self,
        study: optuna.Study,
        contact: Contact,
        *,
        interval: float,
        current: Callable[[], optuna.Trial | None],
        grace: float | None = None,
        max_retry: int | None = MAX_RETRY,
    ) -> None:
        self.study = study
        self.contact = contact
        self.interval = float(interval)
        self.grace = 2 * self.interval if grace is None else float(grace)
        self.max_retry = max_retry
        self._current = current
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nanonas-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def beat(self) -> None:
        """Record that the current trial's process is alive (no-op between trials)."""
        trial = self._current()
        if trial is None:
            return
        try:
            with self.contact.attempt():
                records.write_alive(trial, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it just finished (or was failed as stale); the objective finds out itself

    def judging(self) -> bool:
        """Whether this process may judge others: it has not lost the storage itself lately."""
        return self.contact.calm_for() >= self.grace

    def fail_stale(self) -> list[tuple[int, int | None]]:
        """Fail and re-queue every RUNNING trial that stopped beating; returns (failed, retry)
        numbers. Nothing while this process's own contact with the storage is recent."""
        if not self.judging():
            return []
        now = time.time()
        mine = self._current()
        done = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if mine is not None and trial.number == mine.number:
                continue
            last = records.alive(trial)
            if last is None and trial.datetime_start is not None:
                last = trial.datetime_start.timestamp()
            if last is None or now - last <= self.grace:
                continue
            if not _fail(self.study, trial.number):
                continue  # its owner, or another worker, was first
            done.append((trial.number, requeue(self.study, trial, max_retry=self.max_retry)))
        return done

    def _run(self) -> None:
        # A beat every `interval` from the start of the last one, not `interval` after its end:
        # the beat's write and the check that follows it take time (on a loaded machine, most
        # of a second), and beats spaced by interval + that would look stale to another worker
        # within the grace period of two intervals.
        began = time.monotonic()
        while not self._stop.wait(max(0.0, began + self.interval - time.monotonic())):
            began = time.monotonic()
            try:
                self.beat()
                # Only a call that reaches the storage may count as its answer: a fail_stale
                # that returns at once, during an outage, must not tell the watchdog "answered".
                if self.judging():
                    with self.contact.attempt():
                        self.fail_stale()
            except Exception as e:
                if fault(e) is not None:
                    continue  # the contact counts it; its watchdog decides when to give up
                if disk_full(e) is not None:
                    continue  # the trial's own next write finds out, and ends the run
                if not self._warned:  # a bug: say it once, keep beating
                    self._warned = True
                    print(f"nanonas: warning: heartbeat: {e!r}", file=sys.stderr)


def _fail(study: optuna.Study, number: int) -> bool:
    """Tell trial `number` FAIL unless it is already finished; True if this tell landed."""
    try:
        study.tell(number, state=TrialState.FAIL)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False  # "Cannot tell a FAIL trial": someone else finished it first
    return True


def requeue(study: optuna.Study, trial: FrozenTrial, *, max_retry: int | None) -> int | None:
    """Add a WAITING retry of the failed `trial` with its parameters; returns its number, or
    None when the chain was already retried `max_retry` times."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        return None
    first = trial.system_attrs.get("failed_trial", trial.number)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": first, "retry_history": history},
        )
    )
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return next((t.number for t in reversed(waiting) if retry_of(t) == trial.number), None)


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the trial that `trial` directly retries, if it is a retry."""
    history = trial.system_attrs.get("retry_history")
    return history[-1] if history else None
