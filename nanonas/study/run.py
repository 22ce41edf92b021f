"""Open (create or resume) a study and run trials in it, in this process or in --workers processes.

    study = run(StudyConfig(dataset="synthetic", widths=(8,), n_trials=10))
    search = open_search(config, role="main")     # the study, its data splits, this run's entry
    study = optimize(search, n_trials=5)

The flow of one run: the data is loaded (a failure there touches no study), the storage opened,
an existing study's recipe compared with this run's (a difference is refused before anything is
written; nanonas.study.recipe), the study created if new, the training set split with the
study's own split seed, this process's run entry recorded; then `study.optimize` calls the
objective (nanonas.study.objective) for each trial, which uploads the trial's architecture
picture as it starts; the callback saves its dashboard note as it ends (nanonas.dashboard). The
artifact folder is checked writable before anything else. With --workers N, this process only opens
the study (so a mismatch or a download happens once) and supervises N worker processes
(nanonas.workers), each of which opens the study and optimizes its share of the trials. With
--launcher ray, Ray tasks run that worker loop instead (nanonas.study.ray_launch).

Storage faults: `study.optimize` runs one trial per call, beside a heartbeat thread
(nanonas.study.liveness) and a contact that tracks whether the storage answers
(nanonas.storage.contact). Inside a trial, reads and value-setting writes are retried until the
storage answers; a fault that escapes `optimize` (in ask, sampling or tell) is settled from what
the storage holds once it answers (nanonas.study.settle), in one warning line, and the loop goes
on with the trials still to run. Only finished trials that this process told count towards
`n_trials`. A storage silent for --reconnect-timeout ends the process from the contact's
watchdog: one line naming the trial left RUNNING, exit status 75.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from nanonas import data, records, samplers, space, workers
from nanonas.dashboard import artifacts, plots
from nanonas.errors import DiskFull, DivergedError, NanonasError, StorageGone
from nanonas.storage import (
    Contact,
    disk_full,
    fault,
    is_sqlite,
    mask,
    open_storage,
    where_full,
)
from nanonas.study import recipe
from nanonas.study.config import StudyConfig
from nanonas.study.liveness import Liveness
from nanonas.study.objective import Objective, StorageLost
from nanonas.study.progress import Progress, quiet_optuna_when
from nanonas.study.settle import settle, settle_disk_full, settle_interrupt
from nanonas.train import resolve_device

__all__ = ["Search", "open_search", "optimize", "run"]


@dataclasses.dataclass(frozen=True)
class Search:
    """An opened study and what its trials need: the splits of its data and this run's entry."""

    config: StudyConfig
    study: optuna.Study
    train_set: data.ImageData
    val_set: data.ImageData
    run: str  # the key of this process's run entry in the study
    storage: optuna.storages.BaseStorage  # as opened, before Optuna wraps it


def run(config: StudyConfig) -> optuna.Study:
    """Run `config.n_trials` more trials of the study `config` names and return the study.
    With `config.workers` > 1 the trials are shared out among that many worker processes; with
    `config.launcher` "ray", among that many Ray tasks (nanonas.study.ray_launch)."""
    try:
        if config.launcher == "ray":
            from nanonas.study import ray_launch  # Ray is an optional extra, imported only here

            return ray_launch.launch(config)
        artifacts.prepare(config.artifacts, config.storage)  # an unwritable folder: one line
        if config.workers == 1:
            search = open_search(config, role="main")
            artifacts.say_where(config.artifacts, config.storage)  # once the storage answered
            return optimize(search)
        return _run_workers(config)
    except Exception as e:
        if isinstance(e, NanonasError) or disk_full(e) is None:
            raise
        where = where_full(config.storage)  # opening or joining the study: no trial yet
        raise DiskFull(f"disk full: {where}; no trial was running") from None


def open_search(config: StudyConfig, *, role: str, to_device: bool = True) -> Search:
    """Load the data, then create or resume the study (refusing a changed recipe), and record
    this process (`role`: main, supervisor, worker N) in it. With `to_device` the splits are
    moved to the training device, once for the whole run."""
    device = resolve_device(config.device)  # an unusable device is refused before anything
    full = data.load(config.dataset, data_dir=config.data_dir)
    storage = open_storage(config.storage, reconnect_timeout=config.reconnect_timeout)
    try:
        existing: optuna.Study | None = optuna.load_study(study_name=config.name, storage=storage)
    except KeyError:
        existing = None
    seed = recipe.split_seed(existing.user_attrs if existing else {}, config.seed)
    made = recipe.make(config, full, split_seed=seed)
    if existing is not None:
        recipe.check(existing, config, made)  # refuses in one line, before any write
    study = existing or optuna.create_study(
        storage=storage,
        study_name=config.name,
        load_if_exists=True,  # another process may create it at the same moment
        directions=[records.OBJECTIVES[o] for o in config.objectives],
    )
    train_set, val_set = data.split(full, val_fraction=config.val_fraction, seed=seed)
    recipe.record_creation(study, config, made, train_set, val_set)
    if existing is None:  # another process may have created it at the same moment
        recipe.check(study, config, made)
    if study.metric_names is None:  # new, or made before nanonas named them: dashboard labels
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and still so in 5.1
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([records.METRIC_NAMES[o] for o in config.objectives])
    key = recipe.join(study, config, role=role)
    if to_device:
        train_set, val_set = train_set.to(device), val_set.to(device)
    return Search(config, study, train_set, val_set, key, storage)


def optimize(
    search: Search,
    *,
    n_trials: int | None = None,
    worker: int = 0,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    more: Callable[[], bool] | None = None,
) -> optuna.Study:
    """Run `n_trials` (default: the config's) trials of the opened search; `on_trial` is called
    with each one that finishes. `more`, if given, is asked before each trial whether another
    may start (a launcher that counts the trials of all its workers in one place says no once
    they are all taken). Storage faults are settled here (see the module docstring)."""
    config, study = search.config, search.study
    n_trials = config.n_trials if n_trials is None else n_trials
    # nanonas's own samplers derive each trial's proposal from the seed and the stored trials,
    # so a resumed study goes on exactly where it stopped. Optuna's samplers keep their random
    # state in memory: a resumed run (or another worker) must not replay the same proposals.
    seed = config.seed
    if config.sampler_name not in samplers.REPLAYABLE:
        seed = int(np.random.SeedSequence([seed, len(study.trials), worker]).generate_state(1)[0])
    study.sampler = samplers.make(
        config.sampler_name,
        search_space=space.distributions(config.widths),
        seed=seed,
        population_size=config.population_size,
        canonical=space.canonical,
    )

    progress = Progress(config, n_trials=n_trials)
    contact = Contact(
        search.storage,
        url=config.storage,
        timeout=config.reconnect_timeout,
        on_gone=lambda why: _gone(config, objective, why, worker),
    )
    uploads = artifacts.Uploads(
        where=artifacts.folder(config.artifacts, config.storage),
        num_classes=search.train_set.num_classes,
        in_channels=search.train_set.images.shape[1],
        storage=config.storage,  # a full disk under the study's own file ends the run
    )
    objective = Objective(
        config,
        search.train_set,
        search.val_set,
        progress=progress,
        run=search.run,
        contact=contact,
        uploads=uploads,
    )
    liveness = Liveness(
        study, contact, interval=config.heartbeat_interval, current=lambda: objective.trial
    )
    counted: set[int] = set()
    # The study's plots (nanonas.dashboard.plots) are drawn from all of its trials, so one
    # process refreshing them shows every worker's: with --workers N only worker 0 does, since
    # N refreshers would write the same figures N times (and contend as writers on SQLite).
    # The supervisor saves them once more when every worker is done.
    refresher = plots.Refresher(save=lambda: plots.save(study)) if worker == 0 else None

    def done(study: optuna.Study, trial: FrozenTrial) -> None:
        live, objective.trial = objective.trial, None  # finished: nothing left to beat for
        if trial.number in counted:  # told twice: once by Optuna, once after a fault
            return
        counted.add(trial.number)
        progress.trial_done(study, trial)
        if live is not None and live.number == trial.number:  # save_note needs the live Trial
            contact.retry(lambda: uploads.note(live, trial))  # a fault: retried, said once
        if refresher is not None:
            refresher.trial_done()
        if on_trial is not None:
            on_trial(trial)

    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our per-trial lines replace Optuna's
    liveness.start()
    try:
        # One trial per `optimize` call: a storage fault that escapes it ends only that call.
        while (
            len(counted) < n_trials
            and (deadline is None or time.monotonic() < deadline)
            and (more is None or more())
        ):
            objective.trial, objective.outcome = None, None
            since = datetime.datetime.now()
            try:
                if liveness.judging():  # a dead worker's trial is retried first
                    contact.retry(liveness.fail_stale)
                # A trial nanonas fails itself (diverged, out of memory, interrupted) gets
                # nanonas's one line; Optuna's warning and traceback about it are not shown.
                with quiet_optuna_when(lambda: objective.handled):
                    study.optimize(
                        objective,
                        n_trials=1,
                        catch=(DivergedError, torch.OutOfMemoryError),
                        callbacks=[done],
                    )
            except BaseException as e:  # StorageLost is one; Optuna lets it through untold
                if isinstance(e, KeyboardInterrupt):
                    said = settle_interrupt(study, objective, contact, e)
                    signum = getattr(e, "signum", signal.SIGINT)
                    raise workers.Interrupted(signum, said=said) from None
                if disk_full(e) is not None:
                    said = settle_disk_full(study, objective, 2 * config.heartbeat_interval)
                    raise DiskFull(f"disk full: {where_full(config.storage)}; {said}") from None
                if not isinstance(e, StorageLost) and fault(e) is None:
                    raise
                told, line = settle(study, objective, contact, liveness, e, since=since)
                if told is not None:
                    done(study, told)
                _warn(line)
            else:
                outage = contact.outage()  # absorbed by retries: the trial went on
                if outage is not None:
                    _warn(f"{outage}; nothing was lost")
        if refresher is not None and config.workers == 1:
            refresher.finish()
    finally:
        liveness.stop()
        contact.close()
        optuna.logging.set_verbosity(verbosity)
        progress.close()
    return study


def _warn(line: str) -> None:
    print(f"nanonas: warning: {line}", file=sys.stderr, flush=True)


def _gone(config: StudyConfig, objective: Objective, why: str, worker: int) -> None:
    """The storage never answered again: one line, and the process ends at once (exit 75). It
    runs in the contact's watchdog thread, because the main thread may be stuck in a driver."""
    who = f"worker {worker}: " if config.workers > 1 else ""
    trial = objective.trial
    if trial is not None:
        # With an outcome, the tell was on its way: it may have landed unanswered.
        sent = " unless its result, sent unanswered, landed" if objective.outcome else ""
        left = (
            f"trial {trial.number} is left RUNNING{sent}; rerun the same command once the storage "
            f"is back and that trial is failed and retried after {2 * config.heartbeat_interval} "
            "s without a heartbeat"
        )
    else:
        left = "no trial of this process was running; rerun the same command to go on"
    try:
        sys.stdout.flush()
        print(
            f"nanonas: error: {who}storage {mask(config.storage)}: {why}; {left}",
            file=sys.stderr,
            flush=True,
        )
    finally:  # even where no one reads stderr any more (a closed pipe): the process must end
        os._exit(StorageGone.EXIT_CODE)


def _run_workers(config: StudyConfig) -> optuna.Study:
    """Share `config.n_trials` among `config.workers` processes and supervise them."""
    if is_sqlite(config.storage) and config.progress:
        print(
            "nanonas: warning: SQLite is not made for several writers at once; for --workers "
            "use a postgresql://, mysql:// or redis:// storage, or a journal file (.log)",
            file=sys.stderr,
        )
    for index in config.devices:
        resolve_device(f"cuda:{index}")  # before any worker starts
    # Load (and download) the data once, here: the workers then read it from disk, never
    # downloading it at once. Opening the study here refuses a mismatched one just as early.
    open_search(config, role="supervisor", to_device=False)
    artifacts.say_where(config.artifacts, config.storage)  # once, not by each worker
    base, extra = divmod(config.n_trials, config.workers)
    quotas = [base + (i < extra) for i in range(config.workers)]
    # A killed worker is restarted once its trial's heartbeat is stale (the grace period is
    # twice the interval), so that its first trial fails and re-queues the lost one. A worker
    # whose storage is gone leaves the others time to find out, each saying which trial it
    # leaves RUNNING: they notice at their next beat and give up after the reconnect timeout.
    code = workers.supervise(
        _worker,
        (config,),
        quotas,
        restart_delay=2 * config.heartbeat_interval + 1,
        patience={StorageGone.EXIT_CODE: config.heartbeat_interval + config.reconnect_timeout + 5},
    )
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        raise workers.Interrupted(code - 128)
    if code == StorageGone.EXIT_CODE:
        raise StorageGone()
    if code != 0:
        raise NanonasError(f"a worker failed (exit code {code}); the others were stopped")
    study = optuna.load_study(study_name=config.name, storage=open_storage(config.storage))
    plots.save(study)  # the last refresh: worker 0 saw only its own trials finish
    return study


def _worker(config: StudyConfig, index: int, quota: int, done: Any, said: Any) -> None:
    """One worker process: its share of the trials, on its device, with its share of the CPU."""
    workers.stop_cleanly_on_signals()
    if config.devices:
        config = dataclasses.replace(
            config, device=f"cuda:{config.devices[index % len(config.devices)]}"
        )
    if resolve_device(config.device).type == "cpu":
        # N workers with a thread per core each would slow every one of them down many times.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))

    def count(trial: FrozenTrial) -> None:
        with done.get_lock():
            done.value += 1

    try:
        search = open_search(config, role=f"worker {index}")
        optimize(search, n_trials=quota, worker=index, on_trial=count)
    except NanonasError as e:
        workers.say(said, str(e))  # the supervisor prints the first failing worker's line
        sys.exit(getattr(e, "EXIT_CODE", 2))
    except workers.Interrupted as e:
        sys.exit(128 + e.signum)
