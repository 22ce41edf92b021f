"""--launcher ray: the study's --workers as Ray tasks on a Ray cluster, sharing its storage.

    ray start --head                       # on one machine; `ray start --address ...` on others
    python -m nanonas.study --launcher ray --workers 8 --storage postgresql://user@db-host/nas

Install with `pip install 'nanonas[ray]'`. This module is imported only when --launcher ray is
chosen. The driver (this process) loads the data once and opens the study, as the local
supervisor does, so that a download or a refused recipe happens once; then it starts --workers
Ray tasks. Each task runs what a local worker process runs (open the study, `optimize`) with
--ray-gpus GPUs (Ray sets CUDA_VISIBLE_DEVICES, so the task's `cuda` is its own GPU) and
--ray-cpus CPUs.

Ray's fault tolerance replaces nanonas's supervisor here: a task whose process or node dies is
retried by Ray (up to `_MAX_RETRIES` times). Quotas per task would break then, since a retried
task starts from scratch, so the trials are counted in one place: a small actor, the tally,
grants a task each new trial while the run's finished trials plus those in flight are fewer
than --n-trials, and relays each finished trial to the driver, which prints its line as a local
run does. A retried task first gives up its predecessor's grant, then waits until that one's
trial is stale (twice --heartbeat-interval), so that its first trial fails and re-queues the
lost one (nanonas.study.liveness) with the same architecture.

Ctrl-C (or SIGTERM) on the driver cancels the tasks: Ray raises KeyboardInterrupt in each, which
fails its running trial as "interrupted (SIGINT)" and re-queues it, as a local worker does. A
task that has not ended `_STOP_PATIENCE` seconds later is killed, and the driver fails and
re-queues what it left RUNNING, so that no trial of this run stays RUNNING.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any

import optuna
import ray
import torch
from optuna.trial import FrozenTrial, TrialState

from nanonas import records, workers
from nanonas.dashboard import artifacts
from nanonas.errors import ConfigError, NanonasError
from nanonas.storage import open_storage
from nanonas.study.config import StudyConfig
from nanonas.study.liveness import requeue
from nanonas.study.progress import Progress
from nanonas.study.run import open_search, optimize
from nanonas.train import resolve_device

__all__ = ["launch"]

_MAX_RETRIES = 3  # Ray's default for tasks: how often a lost task is started again
_STOP_PATIENCE = 15.0  # seconds cancelled tasks get to fail and re-queue their trials themselves
_CONNECT_TIMEOUT = 5.0  # seconds to reach --ray-address before it is called unreachable
_INIT_TIMEOUT = 20.0  # seconds ray.init may take to join a cluster that answered
_POLL = 0.5  # seconds between the driver's looks at the tally and the tasks
_STOPPED = "stopped (another worker failed)"  # the fail reason of trials stopped by an error


def launch(config: StudyConfig) -> optuna.Study:
    """Run `config.n_trials` trials of the study on `config.workers` Ray tasks; return it."""
    owned = not ray.is_initialized()  # a caller (a test, a notebook) may have joined already
    if owned:
        _connect(config.ray_address)
    try:
        return _drive(config)
    finally:
        if owned:
            ray.shutdown()


def _connect(address: str) -> None:
    """Join the cluster at `address`, or say in one line why not: fast, where ray.init would
    wait a minute or more for an address where no cluster answers."""
    if address not in ("auto", "local"):
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT).close()
        except OSError as e:
            raise ConfigError(
                f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); "
                "start one with `ray start --head`, or give its address"
            ) from None
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if address == "local":  # a new cluster: its processes keep this stderr, and take longer
        _init(address)
    else:
        _join(address)
    # ray.init puts its own SIGTERM handler (exit at once) in place of nanonas's, which fails
    # and re-queues the running trials first.
    if threading.current_thread() is threading.main_thread():
        for s, handler in handlers.items():
            signal.signal(s, handler)


def _init(address: str) -> None:
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,  # Ray's info lines would bury nanonas's own
            include_dashboard=False if address == "local" else None,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--ray-address {address}: {line}") from None


def _join(address: str) -> None:
    """ray.init on an existing cluster, in one line if it fails. Where something other than
    Ray listens, Ray's C++ client retries for ever, with no timeout to set, and logs each
    attempt straight to file descriptor 2: stderr is held aside meanwhile, and a watchdog ends
    the process in one line (nothing is written before ray.init returns)."""
    sys.stderr.flush()
    kept = os.dup(2)
    joined = threading.Event()
    line = (
        f"nanonas: error: --ray-address {address}: no Ray cluster answered within "
        f"{_INIT_TIMEOUT:g} s (is it a Ray head node's GCS port, 6379 by default?)\n"
    )
    watchdog = threading.Thread(target=_watch, args=(joined, kept, line), daemon=True)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            watchdog.start()
            _init(address)
    finally:
        joined.set()
        os.dup2(kept, 2)
        os.close(kept)


def _watch(joined: threading.Event, stderr: int, line: str) -> None:
    if not joined.wait(_INIT_TIMEOUT):
        try:
            os.write(stderr, line.encode())
        finally:
            os._exit(2)


def _host_port(address: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "ray" or not parts.hostname or port is None:
        raise ConfigError(
            f"--ray-address must be auto, local, host:port or ray://host:port, got {address!r}"
        )
    return parts.hostname, port


class _Tally:
    """A Ray actor: grants trials to the tasks up to the run's count, and collects the finished
    ones for the driver. A task holds at most one grant, until its trial finishes."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.holding: set[int] = set()  # tasks with a trial granted and not yet finished
        self.finished: list[FrozenTrial] = []
        self.numbers: set[int] = set()
        self.attempts: dict[int, int] = {}
        self.runs: list[str] = []  # the run entries of every task attempt (nanonas.records)

    def hello(self, index: int, run: str) -> int:
        """A task (re)starts: its predecessor's grant is void; returns its attempt (0: first)."""
        self.holding.discard(index)
        self.runs.append(run)
        self.attempts[index] = self.attempts.get(index, -1) + 1
        return self.attempts[index]

    def claim(self, index: int) -> bool:
        if index in self.holding:  # its trial was lost to a storage fault: it tries again
            return True
        if len(self.numbers) + len(self.holding) >= self.target:
            return False
        self.holding.add(index)
        return True

    def finish(self, index: int, trial: FrozenTrial) -> None:
        self.holding.discard(index)
        if trial.number not in self.numbers:
            self.numbers.add(trial.number)
            self.finished.append(trial)

    def since(self, count: int) -> list[FrozenTrial]:
        return self.finished[count:]

    def run_keys(self) -> list[str]:
        return list(self.runs)


def _task(config: StudyConfig, index: int, tally: Any) -> tuple[str, str, int]:
    """One worker, as a Ray task: open the study and run trials while the tally grants them.
    Returns ("done" | "error" | "interrupted", its line, its exit code)."""
    if resolve_device(config.device).type == "cpu":
        # Ray reserves --ray-cpus for the task: a thread per core of the node would oversubscribe.
        torch.set_num_threads(max(1, int(config.ray_cpus)))
    try:
        search = open_search(config, role=f"ray worker {index}")
        attempt = ray.get(tally.hello.remote(index, search.run))
        if attempt:
            delay = 2 * config.heartbeat_interval + 1
            print(
                f"nanonas: worker {index} was lost and Ray started it again; it goes on in "
                f"{delay} s, once its trial's heartbeat is stale",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
        optimize(
            search,
            n_trials=config.n_trials,
            worker=index,
            on_trial=lambda trial: ray.get(tally.finish.remote(index, trial)),
            more=lambda: ray.get(tally.claim.remote(index)),
        )
    except NanonasError as e:
        return "error", str(e), getattr(e, "EXIT_CODE", 2)
    except KeyboardInterrupt as e:  # ray.cancel: the trial in flight was failed and re-queued
        return "interrupted", getattr(e, "said", ""), 128 + signal.SIGINT
    return "done", "", 0


def _drive(config: StudyConfig) -> optuna.Study:
    """Start the tasks, print each finished trial, and stop them all on the first error."""
    # The artifact folder is checked once the cluster answers (a refusal before then writes
    # nothing), and passed on absolute: a task's working directory is Ray's.
    where = artifacts.prepare(config.artifacts, config.storage)
    study = open_search(config, role="ray driver", to_device=False).study
    artifacts.say_where(config.artifacts, config.storage)
    gpus = config.ray_gpus
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # The tasks print nothing per trial: the driver does. A relative --data-dir means the
    # driver's folder (a task's working directory is Ray's).
    sent = dataclasses.replace(
        config,
        progress=False,
        data_dir=os.path.abspath(config.data_dir),
        artifacts=str(where.resolve()),
    )
    tally = ray.remote(num_cpus=0)(_Tally).remote(config.n_trials)
    task = ray.remote(_task).options(
        num_cpus=config.ray_cpus, num_gpus=gpus, max_retries=_MAX_RETRIES
    )
    pending = {task.remote(sent, i, tally): i for i in range(config.workers)}
    progress = Progress(config, bars=False)
    shown = 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL)
            shown += _show(study, tally, progress, shown)
            for ref in ready:
                index = pending.pop(ref)
                try:
                    kind, line, code = ray.get(ref)
                except ray.exceptions.RayTaskError:  # a bug in nanonas: its traceback follows
                    _stop(config, study, pending, tally, _STOPPED)
                    raise
                except ray.exceptions.RayError as e:  # lost more often than Ray retries
                    said = _stop(config, study, pending, tally, _STOPPED)
                    raise workers.WorkersGaveUp(
                        f"worker {index} was lost {_MAX_RETRIES + 1} times "
                        f"({type(e).__name__}); {len(_finished(tally))} of {config.n_trials} "
                        f"trials finished and the other workers were stopped{said}; run the "
                        "same command to go on"
                    ) from None
                if kind == "error":
                    said = _stop(config, study, pending, tally, _STOPPED)
                    raise workers.WorkerFailed(f"worker {index}: {line}{said}", exit_code=code)
        shown += _show(study, tally, progress, shown)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        said = _stop(config, study, pending, tally, "interrupted (SIGINT)")
        _show(study, tally, progress, shown)
        raise workers.Interrupted(signum, said=said.removeprefix("; ")) from None
    finally:
        progress.close()
    return optuna.load_study(study_name=config.name, storage=open_storage(config.storage))


def _show(study: optuna.Study, tally: Any, progress: Progress, shown: int) -> int:
    """Print the lines of trials finished since the first `shown`; returns how many."""
    new = _finished(tally, shown)
    for trial in new:
        progress.trial_done(study, trial)
    return len(new)


def _finished(tally: Any, since: int = 0) -> list[FrozenTrial]:
    with contextlib.suppress(ray.exceptions.RayError):
        return ray.get(tally.since.remote(since), timeout=_CONNECT_TIMEOUT)
    return []


def _stop(
    config: StudyConfig, study: optuna.Study, pending: dict[Any, int], tally: Any, reason: str
) -> str:
    """Cancel the tasks still running, kill those that do not end in time, and fail and
    re-queue any trial of this run left RUNNING. Returns what became of their trials."""
    said = []
    for ref in pending:
        ray.cancel(ref)  # KeyboardInterrupt in the task: it fails and re-queues its own trial
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=_STOP_PATIENCE)
    for ref in ready:
        with contextlib.suppress(ray.exceptions.RayError):
            kind, line, code = ray.get(ref)
            if kind == "interrupted" and line:
                said.append(f"worker {pending[ref]}: {line}")
    for ref in late:
        ray.cancel(ref, force=True)
    runs: list[str] = []
    with contextlib.suppress(ray.exceptions.RayError):
        runs = ray.get(tally.run_keys.remote(), timeout=_CONNECT_TIMEOUT)
    said += _fail_left_running(config, study, set(runs), reason)
    return "".join(f"; {line}" for line in said)


def _fail_left_running(
    config: StudyConfig, study: optuna.Study, runs: set[str], reason: str
) -> list[str]:
    """Fail (with `reason`) and re-queue the trials of these run entries still RUNNING."""
    storage = open_storage(config.storage)
    left = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if records.run_of(t) in runs
    ]
    said = []
    # Optuna's public API writes a trial's attributes through a Trial; the storage maps the
    # study's name and the trial's number to the ids a Trial needs.
    study_id = storage.get_study_id_from_name(config.name) if left else None
    for frozen in left:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            records.write_failure(optuna.trial.Trial(study, trial_id), reason)
        try:
            study.tell(frozen.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # its task finished it after all
        retry = requeue(study, frozen, max_retry=None)
        said.append(
            f"trial {frozen.number} failed ({reason}) and was queued again as trial {retry}"
        )
    return said
