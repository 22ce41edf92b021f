"""Run (or resume) an architecture search as an Optuna study: the CLI and the runner behind it.

    python -m nanonas.study --sampler nsga2                      # CIFAR-10, sqlite:///nanonas.db
    python -m nanonas.study --config studies/quick.toml          # synthetic data, under a minute
    python -m nanonas.study --objectives accuracy,params --n-trials 100
    python -m nanonas.study --sampler cmaes --max-params 300000  # never trains a bigger network
    optuna-dashboard sqlite:///nanonas.db                        # watch it live

The same --storage and --study-name resume a study and add --n-trials more trials. The flow:
flags (over a --config TOML, over defaults) -> StudyConfig -> data, storage, sampler, pruner ->
objective(trial) -> space.sample -> budget check and duplicate lookup -> train.train(on_epoch=
record and prune) -> values and user attrs in the storage. Every input is checked, and the data
loaded, before the storage is touched, so bad input changes no study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from nanonas import data, space, workers
from nanonas.errors import ConfigError, DivergedError, NanonasError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.pruning import EpochPruner
from nanonas.samplers import CatCmaSampler, EvolutionSampler
from nanonas.storage import check_url, is_sqlite, mask, open_storage
from nanonas.train import TrainConfig, resolve_device, train

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["OBJECTIVES", "PRUNERS", "SAMPLERS", "StudyConfig", "main", "nano_nas", "run"]

# objective name -> Optuna direction; accuracy comes first, then any size objectives
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything a search needs; each field is also a CLI flag and a --config TOML key."""

    sampler: str = "nsga2"  # a key of SAMPLERS
    pruner: str = "median"  # a key of PRUNERS (nanonas.pruning), multi-objective studies too
    objectives: tuple[str, ...] = ("accuracy",)  # keys of OBJECTIVES, e.g. accuracy,params
    max_params: int | None = None  # a network with more parameters is never trained
    max_flops: int | None = None  # a network with more FLOPs per image is never trained
    storage: str = "sqlite:///nanonas.db"  # database URL, redis:// URL or journal file (.log)
    study_name: str = ""  # empty: nanonas-<dataset>-<objectives>
    n_trials: int = 50  # trials added by this run
    timeout: float | None = None  # seconds after which no new trial starts; None: no limit
    epochs: int = 10  # training epochs per trial
    dataset: str = "cifar10"  # a key of nanonas.data.DATASETS
    data_dir: str = "data"
    val_fraction: float = 0.1  # of the training set, held out to score trials
    seed: int = 0  # seeds the sampler, the split, and (plus the trial number) each trial
    widths: tuple[int, ...] = space.WIDTHS  # base widths the search may pick
    batch_size: int = 256
    lr: float = 0.1  # peak learning rate
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False  # torch.compile each op once per shape, reused by later trials
    population_size: int = 20  # NSGA-II generation size, evolution's population
    workers: int = 1  # processes on this machine sharing the study (and n_trials)
    devices: tuple[int, ...] = ()  # CUDA device indices the workers take turns on
    heartbeat_interval: int = 60  # seconds; a trial silent for 2x this is failed and retried
    progress: bool = True  # a line per trial on stderr, and progress bars on a terminal

    def __post_init__(self) -> None:
        _choose("sampler", self.sampler, SAMPLERS)
        _choose("pruner", self.pruner, PRUNERS)
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives must be distinct names, got {self.objectives!r}")
        for name in self.objectives:
            _choose("objective", name, OBJECTIVES)
        if self.objectives[0] != "accuracy":
            raise ConfigError(
                f"objectives must begin with accuracy (e.g. accuracy,params), "
                f"got {','.join(self.objectives)}"
            )
        for name in ("max_params", "max_flops"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        _choose("dataset", self.dataset, data.DATASETS)
        if not isinstance(self.storage, str):
            raise ConfigError(f"storage must be a string, got {self.storage!r}")
        check_url(self.storage)  # no connection yet: that waits until the data is loaded
        for name in (
            "n_trials",
            "epochs",
            "batch_size",
            "population_size",
            "workers",
            "heartbeat_interval",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        if self.timeout is not None and not (
            isinstance(self.timeout, (int, float)) and self.timeout > 0
        ):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.workers > self.n_trials:
            raise ConfigError(
                f"workers ({self.workers}) must not exceed n-trials ({self.n_trials})"
            )
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in self.devices):
            raise ConfigError(f"devices must be CUDA device indices, got {self.devices!r}")
        if not self.widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths
        ):
            raise ConfigError(f"widths must be positive integers, got {self.widths!r}")
        for name in ("progress", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1:
            raise ConfigError(f"val-fraction must be between 0 and 1, got {self.val_fraction!r}")
        for name in ("study_name", "data_dir", "device"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name.replace('_', '-')} must be a string")
        TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)  # validates

    @property
    def name(self) -> str:
        return self.study_name or f"nanonas-{self.dataset}-{'-'.join(self.objectives)}"

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def budgets(self) -> dict[str, int]:
        """Size limits by user attr name (params, flops); empty when there are none."""
        limits = {"params": self.max_params, "flops": self.max_flops}
        return {key: limit for key, limit in limits.items() if limit is not None}


def _choose(what: str, name: str, valid: dict[str, Any]) -> None:
    if name not in valid:
        raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(valid)}")


# --- samplers and pruners: name -> factory --------------------------------------------------

SAMPLERS: dict[str, Callable[[StudyConfig, int], optuna.samplers.BaseSampler]] = {
    "nsga2": lambda c, seed: optuna.samplers.NSGAIISampler(
        population_size=c.population_size, seed=seed
    ),
    "tpe": lambda c, seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, warn_independent_sampling=False
    ),
    "random": lambda c, seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda c, seed: optuna.samplers.QMCSampler(scramble=True, seed=seed),
    "gp": lambda c, seed: optuna.samplers.GPSampler(seed=seed),
    # nanonas's own samplers: they rebuild their state from the stored trials, so a resumed
    # study continues exactly where it stopped (see nanonas.samplers).
    "cmaes": lambda c, seed: CatCmaSampler(search_space=space.distributions(c.widths), seed=seed),
    "evolution": lambda c, seed: EvolutionSampler(
        search_space=space.distributions(c.widths), seed=seed, population_size=c.population_size
    ),
}

# Samplers whose proposals depend only on the seed and the stored trials.
_REPLAYABLE = ("cmaes", "evolution")

# nanonas prunes by itself (nanonas.pruning), because Optuna's pruners cannot judge a trial in a
# multi-objective study. Median waits for 5 finished peers and judges from epoch 2 on (epoch-1
# accuracy says little); successive halving and hyperband rungs start at 1 epoch. In a Pareto
# study a trial's peers are the trials no larger than it in the size objectives.
PRUNERS: dict[str, Callable[[StudyConfig], EpochPruner]] = {
    name: (
        lambda c, name=name: EpochPruner(
            name, max_epochs=c.epochs, size_keys=c.objectives[1:], n_startup=5, warmup_epochs=2
        )
    )
    for name in ("median", "sha", "hyperband", "none")
}


# --- the runner -----------------------------------------------------------------------------


def run(config: StudyConfig) -> optuna.Study:
    """Run `config.n_trials` more trials of the study `config` names and return the study.
    With `config.workers` > 1 the trials are shared out among that many worker processes."""
    if config.workers == 1:
        train_set, val_set = _prepare_data(config)
        return _optimize(config, train_set, val_set)
    return _run_workers(config)


def _split_data(config: StudyConfig) -> tuple[data.ImageData, data.ImageData]:
    """The seeded train and validation splits of the dataset, on the CPU."""
    full = data.load(config.dataset, data_dir=config.data_dir)
    return data.split(full, val_fraction=config.val_fraction, seed=config.seed)


def _prepare_data(config: StudyConfig) -> tuple[data.ImageData, data.ImageData]:
    """The train and validation splits, moved to the training device once for the whole run."""
    device = resolve_device(config.device)
    train_set, val_set = _split_data(config)
    return train_set.to(device), val_set.to(device)


def _train_config(config: StudyConfig, trial_number: int) -> TrainConfig:
    """How a trial trains: the study's recipe, seeded by the trial's number."""
    return TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        device=config.device,
        compile=config.compile,
        seed=config.seed + trial_number,
    )


def _open_study(
    config: StudyConfig, train_set: data.ImageData, val_set: data.ImageData
) -> optuna.Study:
    """Create or load the study, refuse one that is not this search, record the run's setup."""
    study = optuna.create_study(
        storage=open_storage(config.storage, heartbeat_interval=config.heartbeat_interval),
        study_name=config.name,
        load_if_exists=True,
        directions=[OBJECTIVES[o] for o in config.objectives],
    )
    _check_resumable(study, config)
    study.set_user_attr("config", _public_config(config))
    study.set_user_attr(
        "space",
        {
            "version": space.SPACE_VERSION,
            "ops": list(space.OP_NAMES),
            "blocks_per_stage": space.BLOCKS_PER_STAGE,
        },
    )
    study.set_user_attr("versions", _versions())
    study.set_user_attr(
        "data",
        {
            "dataset": config.dataset,
            "train": len(train_set),
            "val": len(val_set),
            "classes": train_set.num_classes,
            "image_size": train_set.image_size,
        },
    )
    return study


def _optimize(
    config: StudyConfig,
    train_set: data.ImageData,
    val_set: data.ImageData,
    *,
    worker: int = 0,
    on_trial: Callable[[], None] | None = None,
) -> optuna.Study:
    study = _open_study(config, train_set, val_set)
    # nanonas's own samplers derive each trial's proposal from the seed and the stored trials,
    # so a resumed study goes on exactly where it stopped. Optuna's samplers keep their random
    # state in memory: a resumed run (or another worker) must not replay the same proposals.
    seed = config.seed
    if config.sampler not in _REPLAYABLE:
        seed = int(np.random.SeedSequence([seed, len(study.trials), worker]).generate_state(1)[0])
    study.sampler = SAMPLERS[config.sampler](config, seed)

    progress = _Progress(config)
    objective = _Objective(config, train_set, val_set, progress)
    callbacks = [progress.trial_done]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial())
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our per-trial lines replace Optuna's
    try:
        study.optimize(
            objective,
            n_trials=config.n_trials,
            timeout=config.timeout,
            catch=(DivergedError, torch.OutOfMemoryError),
            callbacks=callbacks,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
        progress.close()
    return study


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
    # downloading it at once. Creating the study here refuses a mismatched one just as early.
    _open_study(config, *_split_data(config))
    base, extra = divmod(config.n_trials, config.workers)
    quotas = [base + (i < extra) for i in range(config.workers)]
    # A killed worker is restarted once its trial's heartbeat is stale (Optuna's grace period
    # is twice the interval), so that its first trial fails and re-queues the lost one.
    code = workers.supervise(
        _worker, (config,), quotas, restart_delay=2 * config.heartbeat_interval + 1
    )
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        raise workers.Interrupted(code - 128)
    if code != 0:
        raise NanonasError(f"a worker failed (exit code {code}); the others were stopped")
    return optuna.load_study(study_name=config.name, storage=open_storage(config.storage))


def _worker(config: StudyConfig, index: int, quota: int, done: Any) -> None:
    """One worker process: its share of the trials, on its device, with its share of the CPU."""
    workers.stop_cleanly_on_signals()
    if config.devices:
        config = dataclasses.replace(
            config, device=f"cuda:{config.devices[index % len(config.devices)]}"
        )
    if resolve_device(config.device).type == "cpu":
        # N workers with a thread per core each would slow every one of them down many times.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))

    def count() -> None:
        with done.get_lock():
            done.value += 1

    try:
        train_set, val_set = _prepare_data(config)
        _optimize(
            dataclasses.replace(config, n_trials=quota),
            train_set,
            val_set,
            worker=index,
            on_trial=count,
        )
    except NanonasError as e:
        print(f"nanonas: error: worker {index}: {e}", file=sys.stderr)
        sys.exit(2)
    except workers.Interrupted as e:
        sys.exit(128 + e.signum)


def _check_resumable(study: optuna.Study, config: StudyConfig) -> None:
    attrs = study.user_attrs
    wanted = [OBJECTIVES[o] for o in config.objectives]
    have = [d.name.lower() for d in study.directions]
    old = attrs.get("config", {}).get("objectives")
    if have != wanted or (old is not None and list(old) != list(config.objectives)):
        described = ",".join(old) if old else f"directions {','.join(have)}"
        raise ConfigError(
            f"study {config.name!r} has objectives {described}, not "
            f"{','.join(config.objectives)}; pass a new --study-name"
        )
    old_version = attrs.get("space", {}).get("version")
    if old_version is not None and old_version != space.SPACE_VERSION:
        raise ConfigError(
            f"study {config.name!r} uses search space {old_version}, this nanonas "
            f"has {space.SPACE_VERSION}; pass a new --study-name"
        )
    old_widths = attrs.get("config", {}).get("widths")
    if old_widths is not None and list(old_widths) != list(config.widths):
        raise ConfigError(
            f"study {config.name!r} searches widths {old_widths}, not "
            f"{list(config.widths)}; pass a new --study-name"
        )


def _public_config(config: StudyConfig) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    # Never store a database password where every dashboard viewer can read it.
    values["storage"] = mask(config.storage)
    values["study_name"] = config.name
    return json.loads(json.dumps(values))  # tuples become lists, as JSON storage would


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "nanonas": of("nanonas"),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
    }


_WORKER = f"{socket.gethostname()}:{os.getpid()}"


class _Objective:
    """Samples an architecture, and trains it unless it is over budget or was trained before;
    records what it measured in the trial's user attrs."""

    def __init__(
        self,
        config: StudyConfig,
        train_set: data.ImageData,
        val_set: data.ImageData,
        progress: _Progress,
    ) -> None:
        self.config = config
        self.train_set = train_set
        self.val_set = val_set
        self.progress = progress
        self.pruner = PRUNERS[config.pruner](config)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        cfg = self.config
        arch = space.sample(trial, widths=cfg.widths)
        shape = dict(
            num_classes=self.train_set.num_classes, in_channels=self.train_set.images.shape[1]
        )
        with torch.device("meta"):  # parameter count without allocating the weights
            params = count_params(NanoNet(arch, **shape))
        flops = count_flops(arch, image_size=self.train_set.image_size, **shape)
        sizes = {"params": params, "flops": flops}
        trial.set_user_attr("arch", str(arch))
        trial.set_user_attr("worker", _WORKER)  # which process on which machine ran it
        trial.set_user_attr("params", params)
        trial.set_user_attr("flops", flops)

        # Every trial of a budgeted study carries the constraints (<= 0: within budget), so the
        # sampler learns from the feasible trials too. An over-budget network is never trained.
        over = []
        for key, limit in cfg.budgets.items():
            trial.set_constraint(key, float(sizes[key] - limit))
            if sizes[key] > limit:
                over.append(f"{key} {sizes[key]:,} > {limit:,}")
        if over:
            trial.set_user_attr("infeasible", f"over budget ({', '.join(over)}); not trained")
            return self._values(0.0, sizes)

        original = self._trained_before(trial, str(arch))
        if original is not None:
            return self._reuse(trial, original)

        curve: list[float] = []

        def on_epoch(epoch: int, acc: float) -> None:
            curve.append(acc)
            trial.set_user_attr("val_acc", curve)
            self.progress.epoch_done(epoch, acc)
            if not cfg.multi_objective:  # Optuna keeps (and plots) reports of one objective only
                trial.report(acc, epoch)
            if not self.pruner.judges(epoch):
                return
            trials = trial.study.get_trials(deepcopy=False)
            reason = self.pruner.prune_reason(trials, number=trial.number, curve=curve, sizes=sizes)
            if reason is not None:
                trial.set_user_attr("prune_reason", reason)
                raise optuna.TrialPruned(reason)

        train_config = _train_config(cfg, trial.number)
        self.progress.trial_started(trial.number, arch)
        start = time.perf_counter()
        try:
            history = train(
                arch,
                train_config,
                train_set=self.train_set,
                val_set=self.val_set,
                on_epoch=on_epoch,
            )
        except (DivergedError, torch.OutOfMemoryError) as e:
            reason = str(e).splitlines()[0] if isinstance(e, DivergedError) else "out of memory"
            trial.set_user_attr("fail_reason", reason)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        finally:
            trial.set_user_attr("train_seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("device", str(self.train_set.images.device))
        return self._values(history.val_acc[-1], sizes)

    def _values(self, acc: float, sizes: dict[str, int]) -> float | tuple[float, ...]:
        if not self.config.multi_objective:
            return acc
        return (acc, *(float(sizes[name]) for name in self.config.objectives[1:]))

    @staticmethod
    def _trained_before(trial: optuna.Trial, arch: str) -> optuna.trial.FrozenTrial | None:
        """The first finished trial that trained this same architecture, if any. (Two workers
        may still train one architecture at once; the second then simply trains it again.)"""
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        finished = trial.study.get_trials(deepcopy=False, states=states)
        for other in finished:
            a = other.user_attrs
            if a.get("arch") == arch and "val_acc" in a and "reused_from" not in a:
                return other
        return None

    def _reuse(
        self, trial: optuna.Trial, original: optuna.trial.FrozenTrial
    ) -> float | tuple[float, ...]:
        """Give the trial the result of `original`, an earlier trial of the same architecture."""
        trial.set_user_attr("reused_from", original.number)
        for key in ("val_acc", "device"):
            trial.set_user_attr(key, original.user_attrs[key])
        trial.set_user_attr("train_seconds", 0.0)
        if original.state == optuna.trial.TrialState.PRUNED:
            reason = f"same architecture as trial {original.number}, which was pruned"
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)
        return original.value if not self.config.multi_objective else tuple(original.values)


class _Progress:
    """A bar of trials and, under it, a bar of the running trial's epochs; one line per trial."""

    def __init__(self, config: StudyConfig) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        # Bars only on a terminal, where one process writes: in a log file they are noise, and
        # N workers' bars would overwrite each other. The per-trial lines stay.
        bars = config.progress and config.workers == 1 and sys.stderr.isatty()
        self.epochs = config.epochs
        self.trials = tqdm(
            total=config.n_trials,
            desc="trials",
            unit="trial",
            position=0,
            disable=not bars,
            dynamic_ncols=True,
        )
        self.epoch_bar = tqdm(
            total=config.epochs,
            desc="epochs",
            unit="ep",
            position=1,
            leave=False,
            disable=not bars,
            dynamic_ncols=True,
        )
        self.lines = config.progress

    def trial_started(self, number: int, arch: space.Architecture) -> None:
        self.epoch_bar.reset(total=self.epochs)
        self.epoch_bar.set_description(f"trial {number}")
        self.epoch_bar.set_postfix_str("")  # not the last trial's accuracy

    def epoch_done(self, epoch: int, acc: float) -> None:
        self.epoch_bar.update(1)
        self.epoch_bar.set_postfix(val_acc=f"{acc:.4f}")

    def trial_done(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.trials.update(1)
        acc = trial.user_attrs.get("val_acc", [math.nan])[-1]
        line = (
            f"trial {trial.number:>4}  {trial.state.name:<8}  acc {acc:.4f}  "
            f"params {trial.user_attrs.get('params', 0):>9,}  {trial.user_attrs.get('arch')}"
        )
        for key in ("fail_reason", "prune_reason", "infeasible"):
            if key in trial.user_attrs:
                line += f"  ({trial.user_attrs[key]})"
        if "reused_from" in trial.user_attrs:
            line += f"  (result of trial {trial.user_attrs['reused_from']}, same architecture)"
        if self.lines:
            self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.epoch_bar.close()
        self.trials.close()


# --- results --------------------------------------------------------------------------------


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial of a single-objective study (of several tied on accuracy, the smallest),
    or the Pareto set (by accuracy) of a multi-objective one, over trained, within-budget
    trials (a duplicate that reused a result is left out: its original is there); empty when
    no such trial has completed."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trained = [
        t
        for t in complete
        if "val_acc" in t.user_attrs
        and "reused_from" not in t.user_attrs
        and all(v <= 0 for v in t.constraints.values())
    ]
    # Objective values, turned so that larger is better in every one.
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    scores = {t.number: [s * v for s, v in zip(signs, t.values, strict=True)] for t in trained}
    if len(signs) == 1:
        # One best trial even when several tie on accuracy (small validation sets make ties
        # common): the smallest network among them, then the earliest.
        return sorted(
            trained, key=lambda t: (-scores[t.number][0], t.user_attrs["params"], t.number)
        )[:1]

    def dominated(t: optuna.trial.FrozenTrial) -> bool:
        a = scores[t.number]
        return any(
            all(x >= y for x, y in zip(b, a, strict=True)) and b != a for b in scores.values()
        )

    front = [t for t in trained if not dominated(t)]
    return sorted(front, key=lambda t: (-scores[t.number][0], t.number))


def format_table(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    rows = [("trial", "val_acc", "params", "MFLOPs", "epochs", "seconds", "architecture")]
    for t in trials:
        a = t.user_attrs
        rows.append(
            (
                str(t.number),
                f"{a['val_acc'][-1]:.4f}",
                f"{a['params']:,}",
                f"{a['flops'] / 1e6:.1f}",
                str(len(a["val_acc"])),
                f"{a['train_seconds']:.1f}",
                a["arch"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i < 6 else c for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def _summary(study: optuna.Study) -> str:
    best = best_trials(study)
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    reused = sum("reused_from" in t.user_attrs for t in trials)
    infeasible = sum("infeasible" in t.user_attrs for t in trials)
    extra = "".join(
        f"; {n} {what}"
        for n, what in ((reused, "reused a duplicate's result"), (infeasible, "over budget"))
        if n
    )
    head = f"study {study.study_name!r}: {len(states)} trials ({counts}{extra})"
    if not best:
        return f"{head}\nno trained trial within budget has completed yet"
    title = "best trial" if len(study.directions) == 1 else "Pareto set"
    return f"{head}\n{title}:\n{format_table(best)}"


# --- the original nanoNAS API ---------------------------------------------------------------

_STRATEGIES = {name: name for name in SAMPLERS}


def nano_nas(
    strategy: str = "evolution", *, population_size: int = 10, generations: int = 5, **options: Any
) -> NanoNet:
    """Search as the original nanoNAS did and return the best architecture's trained NanoNet.

    `evolution` is regularized (aging) evolution with `population_size` x `generations` trials;
    any sampler name works too. `options` are StudyConfig fields (dataset, epochs, storage, ...).
    The best architecture is trained once more with its trial's seed, so the returned network is
    the one its trial measured; `model.study` is the study, `model.arch` its architecture.
    """
    _choose("strategy", strategy, _STRATEGIES)
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ConfigError(f"generations must be a positive integer, got {generations!r}")
    config = StudyConfig(
        **{
            "sampler": _STRATEGIES[strategy],
            "population_size": population_size,
            "n_trials": population_size * generations,
            **options,
        }
    )
    if config.workers > 1:
        study = _run_workers(config)
        train_set, val_set = _prepare_data(config)
    else:
        train_set, val_set = _prepare_data(config)  # once for the search and the retraining
        study = _optimize(config, train_set, val_set)
    best = best_trials(study)
    if not best:
        raise NanonasError(f"no trial of study {config.name!r} completed; nothing to return")
    trial = max(best, key=lambda t: t.values[0])
    arch = space.Architecture.parse(trial.user_attrs["arch"])
    history = train(arch, _train_config(config, trial.number), train_set=train_set, val_set=val_set)
    model = history.model.eval()
    model.study = study
    return model


# --- the CLI --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + line
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m nanonas.study",
        description=__doc__.split("\n")[0],
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # --epoch must not quietly mean --epochs
    )
    p.add_argument("--config", help="a study preset (TOML); flags override its values")
    p.add_argument("--sampler", help=f"one of {', '.join(SAMPLERS)} (default nsga2)")
    p.add_argument("--pruner", help=f"one of {', '.join(PRUNERS)} (default median)")
    p.add_argument(
        "--objectives",
        help="accuracy, or accuracy,params or accuracy,flops (default accuracy)",
    )
    p.add_argument("--max-params", type=int, help="never train a network with more parameters")
    p.add_argument("--max-flops", type=int, help="never train a network with more FLOPs per image")
    p.add_argument(
        "--storage",
        help="sqlite:///, postgresql://, mysql://, redis:// URL or a journal file path (.log); "
        "default sqlite:///nanonas.db",
    )
    p.add_argument("--study-name", help="default nanonas-<dataset>-<objectives>")
    p.add_argument("--n-trials", type=int, help="trials to add in this run (default 50)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--epochs", type=int, help="training epochs per trial (default 10)")
    p.add_argument("--dataset", help=f"one of {', '.join(data.DATASETS)} (default cifar10)")
    p.add_argument("--data-dir", help="where datasets are (or are downloaded to); default ./data")
    p.add_argument("--val-fraction", type=float, help="validation share of the training set")
    p.add_argument("--seed", type=int, help="seed of sampler, split and training (default 0)")
    p.add_argument("--widths", help="comma-separated base widths to search (default 24,32,48,64)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--population-size", type=int, help="NSGA-II / evolution population (default 20)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the ops (pays off on a GPU over many trials; off by default)",
    )
    p.add_argument("--workers", type=int, help="worker processes on this machine (default 1)")
    p.add_argument("--devices", help="comma-separated CUDA devices for the workers, e.g. 0,1")
    p.add_argument(
        "--heartbeat-interval",
        type=int,
        help="seconds between a running trial's heartbeats on a database storage (default 60)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def _coerce(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Map CLI or TOML values onto StudyConfig fields; unknown keys are an error."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key {key!r} in {source}; valid: {valid}")
        if name in ("objectives", "widths", "devices"):
            value = _as_tuple(name, value)
        out[name] = value
    return out


def _as_tuple(name: str, value: Any) -> tuple:
    """`a,b` or a TOML list -> a tuple (of ints for widths and devices)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a comma-separated string or a list, got {value!r}")
    if name in ("widths", "devices"):
        try:
            value = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be integers, got {value!r}") from None
    return tuple(value)


def config_from_args(argv: Sequence[str] | None = None) -> StudyConfig:
    """The StudyConfig that these command-line arguments describe (flags over --config)."""
    args = vars(_parser().parse_args(argv))
    merged: dict[str, Any] = {}
    preset = args.pop("config", None)
    if preset is not None:
        path = Path(preset)
        try:
            merged = _coerce(tomllib.loads(path.read_text()), str(path))
        except FileNotFoundError:
            raise ConfigError(f"--config {preset}: no such file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--config {preset}: not valid TOML ({e})") from None
    try:
        merged.update(_coerce(args, "the flags"))
        return StudyConfig(**merged)
    except TypeError as e:  # a TOML value of the wrong type
        raise ConfigError(f"--config {preset}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    workers.stop_cleanly_on_signals()  # SIGTERM stops as cleanly as Ctrl-C
    try:
        config = config_from_args(argv)
        study = run(config)
    except NanonasError as e:
        print(f"nanonas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(
            "nanonas: interrupted; finished trials are saved, run the same command to resume",
            file=sys.stderr,
        )
        return 128 + getattr(e, "signum", signal.SIGINT)
    print(_summary(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
