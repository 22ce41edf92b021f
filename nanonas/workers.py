"""Several worker processes on one machine, all working on one study, kept at their quota.

    python -m nanonas.study --storage postgresql://db-host/nas --workers 4
    python -m nanonas.study --storage postgresql://db-host/nas --workers 2 --devices 0,1

nanonas.study prepares the data and checks the study first, then hands `supervise` a worker
function and each worker's share of the trials. The workers are started with 'spawn', so each
initialises CUDA (or its CPU threads) for itself. Supervision is what makes a lost worker cost
no more than its running trial:

- A worker that dies of any signal is started again, with what is left of its quota, so the
  run still reaches its count. One stopped by a SIGTERM or SIGINT of its own (an operator, a
  scheduler) has failed and re-queued its running trial itself: it restarts at once. One killed
  outright (SIGKILL, the kernel's OOM killer) restarts after `restart_delay` seconds: by then
  its trial's heartbeat is stale, so the new worker's first trial fails the old trial and
  re-queues it (nanonas.study.liveness) before it goes on. Only a worker that dies more often
  than `max_restarts` in all ends the run: WorkersGaveUp, one line, exit status 1.
- SIGTERM or SIGINT to the supervisor is passed to every worker: each ends (or fails) its running
  trial cleanly and exits, and so does the supervisor (exit 143 or 130).
- A worker that exits with an error stops the others: the error (bad data, a full disk) would
  stop them too. The worker leaves its one line with the supervisor, which raises it as
  WorkerFailed: the run ends in that one line even when the other workers hit the same error
  before they stop. After a storage gone for good (exit 75) the others are given time to say
  which trial each leaves RUNNING.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from nanonas.errors import NanonasError

__all__ = [
    "Interrupted",
    "WorkerFailed",
    "WorkersGaveUp",
    "stop_cleanly_on_signals",
    "supervise",
]

_GAVE_UP = -1  # internal: a worker died more often than it may be restarted
_SAID = 1000  # bytes of a worker's one line that reach the supervisor


class WorkersGaveUp(NanonasError):
    """A worker kept dying of signals: the run cannot reach its trial count (exit status 1)."""

    EXIT_CODE = 1


class WorkerFailed(NanonasError):
    """A worker ended with an error of its own (one line, handed to the supervisor); the run
    exits with that worker's exit status."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.EXIT_CODE = exit_code


def say(said: Any, message: str) -> None:
    """Leave a worker's one line with the supervisor (instead of printing it): only the first
    failing worker's line is shown, however many workers hit the same error."""
    said.value = message.encode()[: _SAID - 1]


# Exit codes of a worker that a SIGTERM or SIGINT of its own stopped cleanly: its handler failed
# and re-queued its running trial, then exited 128 + n. Such a worker is restarted at once.
_STOPPED = {128 + s for s in (signal.SIGTERM, signal.SIGINT)}


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised in the main thread. As a KeyboardInterrupt it makes Optuna mark
    the running trial FAIL and re-raise, so the study stays consistent and resumes."""

    def __init__(self, signum: int, *, said: str = "") -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.said = said  # what became of the trial in flight, for the line that ends the run


def stop_cleanly_on_signals() -> None:
    """From now on SIGTERM (the default signal of kill, systemd and batch schedulers) stops the
    process the way Ctrl-C does. Only the first signal raises: a second one must not interrupt
    the clean-up that the first started."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _died(code: int) -> str:
    return signal.Signals(-code if code < 0 else code - 128).name


def supervise(
    target: Callable[..., None],
    args: tuple,
    quotas: list[int],
    *,
    restart_delay: float,
    max_restarts: int | None = None,
    patience: Mapping[int, float] | None = None,
) -> int:
    """Run `target(*args, index, quota, done, said)` in one process per quota and wait for them
    all; `done` is a shared counter the worker increments after each finished trial, `said` the
    buffer where it leaves the line of an error that ends it (`say`). Returns 0 when every
    worker finished, 130/143 when stopped by SIGINT/SIGTERM, else the failing exit code; raises
    WorkerFailed when the first failing worker left a line, and WorkersGaveUp when workers died
    of signals more than `max_restarts` times.
    After a worker exits with a code in `patience`, the others get that many seconds to end by
    themselves before they are killed; after any other failure they are stopped at once."""
    patience = patience or {}
    ctx = multiprocessing.get_context("spawn")
    max_restarts = len(quotas) * 3 if max_restarts is None else max_restarts
    done = [ctx.Value("i", 0) for _ in quotas]
    said = [ctx.Array("c", _SAID) for _ in quotas]
    procs: dict[int, Any] = {}
    restart_at: dict[int, float] = {}
    stop = {"signal": 0}

    def start(i: int) -> None:
        p = ctx.Process(
            target=target,
            args=(*args, i, quotas[i] - done[i].value, done[i], said[i]),
            daemon=False,
        )
        p.start()
        procs[i] = p

    def on_signal(signum: int, frame: Any) -> None:
        stop["signal"] = signum
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker's own handler ends its trial cleanly

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(len(quotas)):
            start(i)
        restarts, failure, failed, gave_up = 0, 0, -1, ""
        kill_at: float | None = None
        while procs or restart_at:
            time.sleep(0.2)
            for i, p in list(procs.items()):
                if p.exitcode is None:
                    continue
                del procs[i]
                code = p.exitcode
                left = quotas[i] - done[i].value
                if stop["signal"] or failure or code == 0 or left <= 0:
                    continue
                if (code < 0 or code in _STOPPED) and restarts < max_restarts:
                    restarts += 1
                    signum = -code if code < 0 else code - 128
                    if code < 0:
                        how = f"was killed ({signal.Signals(signum).name})"
                        when = f"in {restart_delay:.0f} s, once its trial's heartbeat is stale"
                        restart_at[i] = time.monotonic() + restart_delay
                    else:
                        how = f"was stopped ({signal.Signals(signum).name}), its trial re-queued"
                        when = "now"
                        restart_at[i] = time.monotonic()
                    print(
                        f"nanonas: worker {i} {how}, with {left} trials to go; restarting it "
                        + when,
                        file=sys.stderr,
                        flush=True,
                    )
                elif code < 0 or code in _STOPPED:
                    failure = _GAVE_UP
                    gave_up = f"worker {i} died again ({_died(code)}) after {restarts} restarts"
                    for other in procs.values():
                        other.terminate()
                elif not failure:
                    failure, failed = code, i
                    if failure in patience:
                        kill_at = time.monotonic() + patience[failure]
                    else:
                        for other in procs.values():
                            other.terminate()
            if kill_at is not None and time.monotonic() >= kill_at:
                kill_at = None
                for other in procs.values():
                    other.kill()  # stuck where SIGTERM cannot reach: the rerun retries its trial
            for i, when in list(restart_at.items()):
                if stop["signal"] or failure:
                    del restart_at[i]
                elif time.monotonic() >= when:
                    del restart_at[i]
                    start(i)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if stop["signal"]:
        return 128 + stop["signal"]
    if failure == _GAVE_UP:
        finished = sum(d.value for d in done)
        raise WorkersGaveUp(
            f"{gave_up}; {finished} of {sum(quotas)} trials finished and the other workers were "
            "stopped; run the same command to go on"
        )
    if failed >= 0 and said[failed].value:
        raise WorkerFailed(_one_line(failed, [s.value.decode() for s in said]), exit_code=failure)
    return failure


def _one_line(first: int, said: list[str]) -> str:
    """The first failing worker's line, then what each other worker that hit the same error
    says of its own trial, without repeating the error: one line names every trial concerned."""
    line = f"worker {first}: {said[first]}"
    error = said[first].split("; ", 1)[0] + "; "
    for i, text in enumerate(said):
        if i != first and text.startswith(error):
            line += f"; worker {i}: {text.removeprefix(error)}"
    return line
