"""Run (or resume) an architecture search as an Optuna study: the CLI and the runner behind it.

    python -m nanonas.study --sampler nsga2                      # CIFAR-10, sqlite:///nanonas.db
    python -m nanonas.study --config studies/quick.toml          # synthetic data, under a minute
    python -m nanonas.study --objectives accuracy,params --n-trials 100
    optuna-dashboard sqlite:///nanonas.db                        # watch it live

The same --storage and --study-name resume a study and add --n-trials more trials. The flow:
flags (over a --config TOML, over defaults) -> StudyConfig -> data, storage, sampler, pruner ->
objective(trial) -> space.sample -> train.train(on_epoch=report and prune) -> values and user
attrs in the storage. Every input is checked, and the data loaded, before the storage is touched,
so bad input changes no study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from nanonas import data, space
from nanonas.errors import ConfigError, DivergedError, NanonasError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.train import TrainConfig, resolve_device, train

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["OBJECTIVES", "PRUNERS", "SAMPLERS", "StudyConfig", "main", "nano_nas", "run"]

# objective name -> Optuna direction
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "params": "minimize"}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything a search needs; each field is also a CLI flag and a --config TOML key."""

    sampler: str = "nsga2"  # a key of SAMPLERS
    pruner: str = "median"  # a key of PRUNERS; single-objective studies only
    objectives: tuple[str, ...] = ("accuracy",)  # keys of OBJECTIVES, e.g. accuracy,params
    storage: str = "sqlite:///nanonas.db"  # an SQLAlchemy database URL
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
    population_size: int = 20  # NSGA-II generation size
    progress: bool = True  # a line per trial on stderr, and progress bars on a terminal

    def __post_init__(self) -> None:
        _choose("sampler", self.sampler, SAMPLERS)
        _choose("pruner", self.pruner, PRUNERS)
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives must be distinct names, got {self.objectives!r}")
        for name in self.objectives:
            _choose("objective", name, OBJECTIVES)
        _choose("dataset", self.dataset, data.DATASETS)
        _check_storage_url(self.storage)
        for name in ("n_trials", "epochs", "batch_size", "population_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        if self.timeout is not None and not (
            isinstance(self.timeout, (int, float)) and self.timeout > 0
        ):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not self.widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths
        ):
            raise ConfigError(f"widths must be positive integers, got {self.widths!r}")
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be true or false, got {self.progress!r}")
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


def _choose(what: str, name: str, valid: dict[str, Any]) -> None:
    if name not in valid:
        raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(valid)}")


def _check_storage_url(url: str) -> None:
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        if not isinstance(url, str):
            raise ValueError(url)
        parsed = sqlalchemy.engine.make_url(url)
        parsed.get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError):
        raise ConfigError(
            f"malformed storage URL {url!r}; expected a database URL such as "
            f"sqlite:///nanonas.db or postgresql://user@host/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ConfigError(f"storage {url!r}: folder {str(folder)!r} does not exist")


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
}

# Epoch k is reported as step k. Median waits for 5 finished trials and judges from epoch 2 on:
# epoch-1 accuracy says little; successive halving and hyperband rungs start at 1 epoch.
PRUNERS: dict[str, Callable[[StudyConfig], optuna.pruners.BasePruner]] = {
    "median": lambda c: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    "hyperband": lambda c: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=c.epochs),
    "sha": lambda c: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    "none": lambda c: optuna.pruners.NopPruner(),
}


# --- the runner -----------------------------------------------------------------------------


def run(config: StudyConfig) -> optuna.Study:
    """Run `config.n_trials` more trials of the study `config` names and return the study."""
    return _optimize(config, *_prepare_data(config))


def _prepare_data(config: StudyConfig) -> tuple[data.ImageData, data.ImageData]:
    """The train and validation splits, moved to the training device once for the whole run."""
    device = resolve_device(config.device)
    full = data.load(config.dataset, data_dir=config.data_dir)
    train_set, val_set = data.split(full, val_fraction=config.val_fraction, seed=config.seed)
    return train_set.to(device), val_set.to(device)


def _train_config(config: StudyConfig, trial_number: int) -> TrainConfig:
    """How a trial trains: the study's recipe, seeded by the trial's number."""
    return TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        device=config.device,
        seed=config.seed + trial_number,
    )


def _optimize(
    config: StudyConfig, train_set: data.ImageData, val_set: data.ImageData
) -> optuna.Study:
    storage = _storage(config.storage)
    study = optuna.create_study(
        storage=storage,
        study_name=config.name,
        load_if_exists=True,
        directions=[OBJECTIVES[o] for o in config.objectives],
    )
    _check_resumable(study, config)
    # A resumed study must not replay the first run's proposals: offset the sampler's seed.
    study.sampler = SAMPLERS[config.sampler](config, config.seed + len(study.trials))
    study.pruner = PRUNERS[config.pruner](config)
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

    if config.multi_objective and config.pruner != "none" and config.progress:
        print(
            "nanonas: note: Optuna prunes single-objective studies only; every trial of this "
            "study trains all its epochs",
            file=sys.stderr,
        )
    progress = _Progress(config)
    objective = _Objective(config, train_set, val_set, progress)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our per-trial lines replace Optuna's
    try:
        study.optimize(
            objective,
            n_trials=config.n_trials,
            timeout=config.timeout,
            catch=(DivergedError, torch.OutOfMemoryError),
            callbacks=[progress.trial_done],
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
        progress.close()
    return study


def _storage(url: str) -> optuna.storages.RDBStorage:
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Wait for a lock (another process, the dashboard) instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 30}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


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
    import sqlalchemy.engine

    values = dataclasses.asdict(config)
    # Never store a database password where every dashboard viewer can read it.
    values["storage"] = sqlalchemy.engine.make_url(config.storage).render_as_string(
        hide_password=True
    )
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


class _Objective:
    """Samples an architecture, trains it, and records what it measured in the trial."""

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

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        cfg = self.config
        arch = space.sample(trial, widths=cfg.widths)
        shape = dict(
            num_classes=self.train_set.num_classes, in_channels=self.train_set.images.shape[1]
        )
        with torch.device("meta"):  # parameter count without allocating the weights
            params = count_params(NanoNet(arch, **shape))
        flops = count_flops(arch, image_size=self.train_set.image_size, **shape)
        trial.set_user_attr("arch", str(arch))
        trial.set_user_attr("params", params)
        trial.set_user_attr("flops", flops)
        curve: list[float] = []

        def on_epoch(epoch: int, acc: float) -> None:
            curve.append(acc)
            trial.set_user_attr("val_acc", curve)
            self.progress.epoch_done(epoch, acc)
            if not cfg.multi_objective:  # Optuna cannot report in multi-objective studies
                trial.report(acc, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"pruned after epoch {epoch} of {cfg.epochs} "
                        f"at validation accuracy {acc:.4f}"
                    )

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
        acc = history.val_acc[-1]
        return acc if not cfg.multi_objective else (acc, float(params))


class _Progress:
    """A bar of trials and, under it, a bar of the running trial's epochs; one line per trial."""

    def __init__(self, config: StudyConfig) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        # Bars only on a terminal: in a log file they are noise; the per-trial lines stay.
        bars = config.progress and sys.stderr.isatty()
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
        if "fail_reason" in trial.user_attrs:
            line += f"  ({trial.user_attrs['fail_reason']})"
        if self.lines:
            self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.epoch_bar.close()
        self.trials.close()


# --- results --------------------------------------------------------------------------------


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial of a single-objective study, or the Pareto set (by accuracy) of a
    multi-objective one; empty when no trial has completed."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: -t.values[0])


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
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    head = f"study {study.study_name!r}: {len(states)} trials ({counts})"
    if not best:
        return f"{head}\nno trial has completed yet"
    title = "best trial" if len(best) == 1 and len(study.directions) == 1 else "Pareto set"
    return f"{head}\n{title}:\n{format_table(best)}"


# --- the original nanoNAS API ---------------------------------------------------------------

_STRATEGIES = {"evolution": "nsga2"} | {name: name for name in SAMPLERS}


def nano_nas(
    strategy: str = "evolution", *, population_size: int = 10, generations: int = 5, **options: Any
) -> NanoNet:
    """Search as the original nanoNAS did and return the best architecture's trained NanoNet.

    `evolution` is NSGA-II with `population_size` x `generations` trials; any sampler name works
    too. `options` are StudyConfig fields (dataset, epochs, storage, ...). The best architecture
    is trained once more with its trial's seed, so the returned network is the one its trial
    measured; `model.study` is the study, `model.arch` its architecture.
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
    train_set, val_set = _prepare_data(config)  # loaded once for the search and the retraining
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
    p.add_argument("--objectives", help="accuracy or accuracy,params (default accuracy)")
    p.add_argument("--storage", help="database URL (default sqlite:///nanonas.db)")
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
    p.add_argument("--population-size", type=int, help="NSGA-II population (default 20)")
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
        if name in ("objectives", "widths"):
            value = _as_tuple(name, value)
        out[name] = value
    return out


def _as_tuple(name: str, value: Any) -> tuple:
    """`a,b` or a TOML list -> a tuple (of ints for widths)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a comma-separated string or a list, got {value!r}")
    if name == "widths":
        try:
            value = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"widths must be integers, got {value!r}") from None
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
    try:
        config = config_from_args(argv)
        study = run(config)
    except NanonasError as e:
        print(f"nanonas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "nanonas: interrupted; finished trials are saved, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(_summary(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
