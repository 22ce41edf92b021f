"""After a storage fault ended a `study.optimize` call: wait for the storage, settle the trial in
flight, and say in one line what happened to it.

    told, line = settle(study, objective, contact, liveness, error, since=iteration_start)

nanonas.study.run calls `study.optimize` for one trial at a time and, when a storage fault (or
the objective's StorageLost) escapes it, calls `settle`. Nothing is re-run blindly: what the
storage holds is read first, once it answers again, and decides what to do.

- No trial had reached the objective (the fault came in `ask`): a trial may have been created
  even so, its commit applied but never answered. Such a trial is RUNNING, started after this
  iteration began, has no architecture and never beat, not even in the few seconds after the
  storage answered again (another worker's new trial beats at once): it is failed and re-queued,
  so the run ends with exactly the trials it asked for, plus retries.
- The trial in flight is still RUNNING. With an outcome known (the fault hit the tell), that
  outcome is told now. Without one, it is failed with its reason and re-queued with the same
  parameters.
- It is finished. COMPLETE or PRUNED, or FAIL with a failure of its own (a diverged loss): the
  tell landed and the trial counts. FAIL otherwise: another worker judged it stale while this
  one was cut off. Its result is dropped, and its retry (already queued by that worker) runs.

Returns the trial if it counts as one of the run's trials (its tell landed), and the line to show.
"""

from __future__ import annotations

import contextlib
import datetime
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanonas import records
from nanonas.storage import Contact, fault, mask
from nanonas.study.liveness import Liveness, requeue, retry_of
from nanonas.study.objective import Objective, interrupted_reason

__all__ = ["settle", "settle_disk_full", "settle_interrupt"]

_FIRST_BEAT = 3.0  # seconds: longer than a retried first beat waits (2 s) once the storage is back


def settle(
    study: optuna.Study,
    objective: Objective,
    contact: Contact,
    liveness: Liveness,
    error: BaseException,
    *,
    since: datetime.datetime,
) -> tuple[FrozenTrial | None, str]:
    """Settle what `error` interrupted (see the module docstring); `since` is when this
    iteration began, before its `ask`."""
    cause = fault(error)
    why = contact.failed(cause) if cause is not None else str(error)
    contact.wait(lambda: study.user_attrs)  # the watchdog ends the process if it never answers
    outage = contact.outage()
    head = outage or f"storage {mask(contact.url)}: {why}"
    trial = objective.trial
    if trial is None:
        orphans = contact.retry(lambda: _orphans(study, since))
        if not orphans:
            return None, f"{head}; no trial was lost"
        time.sleep(_FIRST_BEAT)
        again = {t.number for t in contact.retry(lambda: _orphans(study, since))}
        said = [
            _fail_and_requeue(study, contact, liveness, o, None, why)
            if o.number in again
            else _orphan_fate(study, contact, o.number)
            for o in orphans
        ]
        return None, f"{head}; {'; '.join(said)}"

    frozen = contact.retry(lambda: _trial(study, trial.number))
    if frozen.state == TrialState.RUNNING:
        if objective.outcome is not None:
            kind, value = objective.outcome
            state = {"values": None, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}[kind]
            contact.retry(lambda: _tell_if_running(study, trial, state, value, kind))
            frozen = contact.retry(lambda: _trial(study, trial.number))
            return frozen, f"{head}; trial {trial.number}'s result was told again"
        said = _fail_and_requeue(study, contact, liveness, frozen, trial, why)
        return None, f"{head}; {said}"
    mine = frozen.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        objective.outcome is not None and objective.outcome[0] == "failed"
    )
    if mine:
        return frozen, f"{head}; trial {trial.number} was told before the fault"
    retry = contact.retry(lambda: _retry_number(study, trial.number))
    retried = f", retried as trial {retry}" if retry is not None else ""
    return None, (
        f"{head}; trial {trial.number} was failed by another worker while this one was cut off "
        f"(no heartbeat for {liveness.grace:g} s){retried}; its result is dropped"
    )


def settle_interrupt(
    study: optuna.Study, objective: Objective, contact: Contact, error: KeyboardInterrupt
) -> str:
    """After Ctrl-C or SIGTERM ended a `study.optimize` call: the trial in flight ends FAIL with
    its reason "interrupted (SIGINT)" or "(SIGTERM)" (the objective wrote it, and Optuna told
    the FAIL) and is re-queued with the same architecture, so that the next run, or another
    worker, runs it first. An interrupt that hit Optuna's tell leaves the trial RUNNING: it is
    told here. Returns what happened, for the line that ends the process."""
    trial = objective.trial
    if trial is None:
        return "no trial was running"
    reason = interrupted_reason(error)
    frozen = contact.retry(lambda: _trial(study, trial.number))
    if frozen.state == TrialState.RUNNING:
        if objective.outcome is not None and objective.outcome[0] != "failed":
            kind, value = objective.outcome  # finished; the interrupt hit its tell
            state = TrialState.PRUNED if kind == "pruned" else None
            contact.retry(lambda: _tell_if_running(study, trial, state, value, kind))
            return f"trial {trial.number} had finished and was told"
        if objective.outcome is None:
            objective.outcome = ("failed", reason)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            contact.retry(lambda: records.write_failure(trial, objective.outcome[1]))
        contact.retry(lambda: _tell_if_running(study, trial, TrialState.FAIL, None, ""))
        frozen = contact.retry(lambda: _trial(study, trial.number))
    if frozen.state != TrialState.FAIL or objective.outcome != ("failed", reason):
        return f"trial {trial.number} had finished ({frozen.state.name})"
    # An interrupt is not the trial's fault: it is re-queued however often it was retried.
    retry = contact.retry(lambda: requeue(study, frozen, max_retry=None))
    return f"trial {trial.number} failed ({reason}) and was queued again as trial {retry}"


def settle_disk_full(study: optuna.Study, objective: Objective, grace: float) -> str:
    """After a full disk under the storage ended a `study.optimize` call: the trial in flight is
    marked FAIL ("disk full") if the storage still takes that write. Returns what became of it,
    for the one line that ends the run. No retries: the disk stays full until someone acts."""
    trial = objective.trial
    if trial is None:
        return "no trial was running"
    with contextlib.suppress(Exception):
        records.write_failure(trial, "disk full")
    with contextlib.suppress(Exception):
        _tell_if_running(study, trial, TrialState.FAIL, None, "")
    try:
        state = _trial(study, trial.number).state
    except Exception:
        state = TrialState.RUNNING
    if state == TrialState.RUNNING:
        return (
            f"trial {trial.number} is left RUNNING: free some space and rerun the same command, "
            f"and it is failed and retried after {grace:g} s without a heartbeat"
        )
    if state == TrialState.FAIL:
        return f"trial {trial.number} was marked FAIL; free some space and rerun the same command"
    return f"trial {trial.number} had finished; free some space and rerun the same command"


def _fail_and_requeue(
    study: optuna.Study,
    contact: Contact,
    liveness: Liveness,
    frozen: FrozenTrial,
    trial: optuna.Trial | None,
    why: str,
) -> str:
    """Fail a RUNNING trial of this process with its reason, then re-queue it."""
    if trial is not None:  # the objective's own trial: its reason is recorded first
        reason = f"storage connection lost ({why}); retried"
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            contact.retry(lambda: records.write_failure(trial, reason))
    told = contact.retry(lambda: _tell_if_running(study, frozen.number, TrialState.FAIL, None, ""))
    if not told:
        return f"trial {frozen.number} was already finished elsewhere"
    retry = contact.retry(lambda: requeue(study, frozen, max_retry=liveness.max_retry))
    retried = f"retried as trial {retry}" if retry is not None else "not retried again"
    return f"trial {frozen.number} was cut off and failed, {retried}"


def _orphan_fate(study: optuna.Study, contact: Contact, number: int) -> str:
    """What became of an orphan while settle waited: it beat (another worker's trial after all),
    or a heartbeat check, of this process or another, failed and re-queued it."""
    if contact.retry(lambda: _trial(study, number)).state != TrialState.FAIL:
        return f"trial {number} was another worker's"
    retry = contact.retry(lambda: _retry_number(study, number))
    retried = f", retried as trial {retry}" if retry is not None else ""
    return f"trial {number}, created unanswered, was failed by the heartbeat check{retried}"


def _tell_if_running(
    study: optuna.Study, trial: optuna.Trial | int, state: TrialState | None, value, kind: str
) -> bool:
    """Tell `trial` unless it is already finished (its tell may have landed unanswered)."""
    number = trial if isinstance(trial, int) else trial.number
    if _trial(study, number).state != TrialState.RUNNING:
        return False
    try:
        if kind == "values":
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False  # finished between the read and the tell
    return True


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _orphans(study: optuna.Study, since: datetime.datetime) -> list[FrozenTrial]:
    """RUNNING trials created (or popped) since `since` that never reached an objective."""
    start = since - datetime.timedelta(seconds=1)  # datetimes may be stored coarser
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if records.alive(t) is None
        and records.arch(t) is None
        and t.datetime_start is not None
        and t.datetime_start >= start
    ]


def _retry_number(study: optuna.Study, number: int) -> int | None:
    trials = study.get_trials(deepcopy=False)
    return next((t.number for t in trials if retry_of(t) == number), None)
