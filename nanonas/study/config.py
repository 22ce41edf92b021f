"""StudyConfig: every setting of a search, declared once with its type, range, help and role.

    config = StudyConfig(sampler="cmaes", epochs=20)  # checked now: ConfigError names the value
    config = StudyConfig(**preset("quick"))            # nanonas.study.presets: a TOML file

Each field is a CLI flag (`--n-trials`), a --config TOML key (`n_trials`) and a keyword of
`nano_nas()`. Its metadata, an `Option`, says what kind of value it takes (checked in
`__post_init__`), what its help says, and whether it belongs to the study's recipe:
nanonas.study.cli builds the parser from these, so no default or help text is written twice, and
nanonas.study.recipe fixes the recipe fields when a study is created. The few checks that look at
two fields, or at more than a type and a range, follow the loop over the fields.

Presets, TOML files of these keys, are read by nanonas.study.presets.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Callable, Mapping
from typing import Any

from nanonas import data, pruning, records, samplers, space
from nanonas.errors import ConfigError
from nanonas.storage import check_url, is_sqlite, mask
from nanonas.storage.urls import parse
from nanonas.train import TrainConfig

__all__ = ["OPTIONS", "Option", "StudyConfig", "coerce", "shown_default"]


@dataclasses.dataclass(frozen=True)
class Option:
    """How one StudyConfig field is checked, shown and treated on a resume."""

    help: str
    kind: str  # a key of _KINDS, or "choice" (one of `choices`) / "choices" (a tuple of them)
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed: no limit
    recipe: bool = False  # fixed when the study is created (nanonas.study.recipe)
    shown: str = ""  # the default as help and README show it, where the plain value is not it
    what: str = ""  # the noun in "unknown <what> 'x'" (choice kinds); default: the field name


@dataclasses.dataclass(frozen=True)
class _Kind:
    must: str  # what a bad value is told: "<flag> <must>, got <value>"
    ok: Callable[[Any], bool]
    parse: Callable[[str], Any]  # a flag's text -> value; TOML values arrive typed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


_KINDS: dict[str, _Kind] = {
    "count": _Kind("must be a positive integer", lambda v: _is_int(v) and v >= 1, int),
    "integer": _Kind("must be an integer", _is_int, int),
    "seconds": _Kind(
        "must be a positive number of seconds", lambda v: _is_number(v) and v > 0, float
    ),
    "fraction": _Kind("must be between 0 and 1", lambda v: _is_number(v) and 0 < v < 1, float),
    "rate": _Kind("must be a finite number >= 0", lambda v: _is_number(v) and v >= 0, float),
    "switch": _Kind("must be true or false", lambda v: isinstance(v, bool), str),
    "text": _Kind("must be a string", lambda v: isinstance(v, str), str),
    "storage": _Kind("must be a string", lambda v: isinstance(v, str), str),
    "folder": _Kind("must be a string", lambda v: isinstance(v, str), str),
    "widths": _Kind(
        "must be positive integers",
        lambda v: isinstance(v, tuple) and bool(v) and all(_is_int(w) and w >= 1 for w in v),
        str,
    ),
    "devices": _Kind(
        "must be CUDA device indices",
        lambda v: isinstance(v, tuple) and all(_is_int(d) and d >= 0 for d in v),
        str,
    ),
    "choice": _Kind("", lambda v: True, str),  # checked against the option's choices
    "choices": _Kind("must be distinct names", lambda v: True, str),
}
_TUPLES = ("widths", "devices", "choices")  # kinds whose value is a tuple: "a,b" or a list
_LAUNCHERS = ("local", "ray")  # what starts --workers: nanonas.workers, nanonas.study.ray_launch


def _option(default: Any, help: str, kind: str, **more: Any) -> Any:
    return dataclasses.field(default=default, metadata={"option": Option(help, kind, **more)})


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything a search needs; each field is also a CLI flag and a --config TOML key."""

    # None: by the number of objectives, on the evidence of benchmarks/results/samplers-nb201.md
    # (NAS-Bench-201, reported seeds 0-29). One: the hybrid, whose mean regret is below TPE's
    # at 25, 50 and 100 trials on all three datasets, and the best on the stand-in landscape of
    # nanonas's own space at every budget. Several: TPE, whose Pareto sets beat the hybrid's on
    # CIFAR-10.
    sampler: str | None = _option(
        None,
        "how candidates are proposed",
        "choice",
        choices=tuple(samplers.SAMPLERS),
        optional=True,
        shown="hybrid with one objective, tpe with several",
    )
    pruner: str = _option(
        "median",
        "how weak trials stop early, multi-objective studies too",
        "choice",
        choices=pruning.FLAVOURS,
    )
    objectives: tuple[str, ...] = _option(
        ("accuracy",),
        "comma-separated, accuracy first (maximize accuracy, minimize size)",
        "choices",
        choices=tuple(records.OBJECTIVES),
        what="objective",
        recipe=True,
    )
    max_params: int | None = _option(
        None,
        "budget: a network with more parameters is never trained",
        "count",
        optional=True,
        recipe=True,
    )
    max_flops: int | None = _option(
        None,
        "budget: a network with more FLOPs per image is never trained",
        "count",
        optional=True,
        recipe=True,
    )
    storage: str = _option(
        "sqlite:///nanonas.db",
        "where the study lives: a sqlite:///, postgresql://, mysql:// or redis:// URL, "
        "or a journal file (.log)",
        "storage",
    )
    artifacts: str = _option(
        "",
        "folder for each trial's architecture picture (optuna-dashboard --artifact-dir); "
        "share it between machines",
        "folder",
        shown="<db>-artifacts beside an SQLite or journal file, else ./nanonas-artifacts",
    )
    study_name: str = _option(
        "", "the study to create or resume", "text", shown="nanonas-<dataset>-<objectives>"
    )
    n_trials: int = _option(50, "trials added by this run", "count")
    timeout: float | None = _option(
        None, "seconds after which no new trial starts", "seconds", optional=True
    )
    epochs: int = _option(10, "training epochs per trial", "count", recipe=True)
    dataset: str = _option(
        "cifar10",
        "what trials train on (imagefolder: --data-dir/train/<class>/*.jpg)",
        "choice",
        choices=tuple(data.DATASETS),
        recipe=True,
    )
    data_dir: str = _option("data", "where datasets are, or are downloaded to", "text")
    val_fraction: float = _option(
        0.1,
        "share of the training set held out to score trials (the test split is never read)",
        "fraction",
        recipe=True,
    )
    seed: int = _option(
        0,
        "seeds the sampler and each trial (seed + trial number); a new study's split too",
        "integer",
    )
    widths: tuple[int, ...] = _option(
        space.WIDTHS, "comma-separated base widths the search may pick", "widths", recipe=True
    )
    batch_size: int = _option(256, "images per training step", "count", recipe=True)
    lr: float = _option(0.1, "peak learning rate", "rate", recipe=True)
    device: str = _option("auto", "CUDA, then MPS, then CPU; or cpu, cuda, cuda:N, mps", "text")
    compile: bool = _option(
        False, "torch.compile each op once per shape, reused by later trials", "switch"
    )
    population_size: int = _option(20, "NSGA-II generation size; evolution's population", "count")
    workers: int = _option(
        1, "workers sharing the study and --n-trials (processes, or Ray tasks)", "count"
    )
    launcher: str = _option(
        "local",
        "what starts the --workers: local (processes on this machine) or ray (tasks on a Ray "
        "cluster, each on its own GPU; pip install 'nanonas[ray]')",
        "choice",
        choices=_LAUNCHERS,
    )
    ray_address: str = _option(
        "auto",
        "with --launcher ray, the cluster to join: auto (RAY_ADDRESS, else the one `ray start` "
        "began on this machine), host:port, ray://host:10001, or local (a new one on this machine)",
        "text",
    )
    ray_gpus: float | None = _option(
        None,
        "with --launcher ray, GPUs per worker (0.5: two workers share a GPU)",
        "rate",
        optional=True,
        shown="1 if the cluster has GPUs, else 0",
    )
    ray_cpus: float = _option(1.0, "with --launcher ray, CPUs per worker", "rate")
    devices: tuple[int, ...] = _option(
        (), "comma-separated CUDA devices the workers take turns on, e.g. 0,1", "devices"
    )
    heartbeat_interval: int = _option(
        60, "seconds; a trial silent for twice this is failed and retried (any storage)", "count"
    )
    reconnect_timeout: float = _option(
        60.0,
        "seconds the storage may stay unreachable or silent before the run stops with one line",
        "seconds",
    )
    progress: bool = _option(
        True, "a line per finished trial, and progress bars on a terminal", "switch"
    )

    def __post_init__(self) -> None:
        for name, option in OPTIONS.items():
            _check(name, getattr(self, name), option)
        # What one field's kind cannot say:
        if self.objectives[0] != "accuracy":
            raise ConfigError(
                f"objectives must begin with accuracy (e.g. accuracy,params), "
                f"got {','.join(self.objectives)}"
            )
        if self.workers > self.n_trials:
            raise ConfigError(
                f"workers ({self.workers}) must not exceed n-trials ({self.n_trials})"
            )
        check_url(self.storage)  # no connection yet: that waits until the data is loaded
        if self.launcher == "ray":
            self._check_ray()
        self.training(seed=0)  # the training recipe's own checks

    def _check_ray(self) -> None:
        """--launcher ray: Ray installed, a storage every node reaches, GPUs left to Ray."""
        if importlib.util.find_spec("ray") is None:  # imported by nanonas.study.ray_launch
            raise ConfigError(
                "--launcher ray needs Ray, which is not installed: pip install 'nanonas[ray]'"
            )
        # A file (SQLite, a journal) lives on one machine: workers on other nodes would each
        # write a study of their own. Even on a shared filesystem, file locks over NFS are not
        # safe for many writers; a database server is.
        kind = "an SQLite file" if is_sqlite(self.storage) else "a journal file"
        if is_sqlite(self.storage) or parse(self.storage).kind == "journal":
            raise ConfigError(
                f"--launcher ray needs a storage every node can reach, not {kind} "
                f"({mask(self.storage)}); use a postgresql://, mysql:// or redis:// URL"
            )
        if self.devices:
            raise ConfigError(
                "--devices is for --launcher local; Ray gives each worker its GPUs (--ray-gpus)"
            )

    @property
    def name(self) -> str:
        return self.study_name or f"nanonas-{self.dataset}-{'-'.join(self.objectives)}"

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def sampler_name(self) -> str:
        """--sampler, or without it the default for the number of objectives."""
        return self.sampler or ("tpe" if self.multi_objective else "hybrid")

    @property
    def budgets(self) -> dict[str, int]:
        """Size limits by trial attribute (params, flops); empty when there are none."""
        limits = {"params": self.max_params, "flops": self.max_flops}
        return {key: limit for key, limit in limits.items() if limit is not None}

    def training(self, *, seed: int) -> TrainConfig:
        """How a trial trains: the study's recipe on this run's device, seeded by `seed`."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            device=self.device,
            compile=self.compile,
            seed=seed,
        )

    def public(self) -> dict[str, Any]:
        """The settings as JSON values, for the study's attributes: the study name and sampler
        resolved, and never a database password (every dashboard viewer can read them)."""
        values = dataclasses.asdict(self) | {
            "storage": mask(self.storage),
            "study_name": self.name,
            "sampler": self.sampler_name,
        }
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in dataclasses.fields(StudyConfig)}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(StudyConfig)}


def _check(name: str, value: Any, option: Option) -> None:
    flag = name.replace("_", "-")
    if value is None and option.optional:
        return
    what = option.what or flag
    if option.kind == "choices":
        names = isinstance(value, tuple) and bool(value) and all(isinstance(v, str) for v in value)
        if not names or len(set(value)) != len(value):
            raise ConfigError(f"{flag} must be distinct names, got {value!r}")
        for v in value:
            _check(name, v, dataclasses.replace(option, kind="choice"))
    elif option.kind == "choice":
        if not isinstance(value, str) or value not in option.choices:
            raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(option.choices)}")
    elif not _KINDS[option.kind].ok(value):
        raise ConfigError(f"{flag} {_KINDS[option.kind].must}, got {value!r}")


def shown_default(name: str) -> str:
    """The default of field `name` as the CLI help and the README show it."""
    option, default = OPTIONS[name], _DEFAULTS[name]
    if option.shown:
        return option.shown
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    if isinstance(default, float):
        return f"{default:g}"  # 60, not 60.0
    return str(default)


def flag_type(name: str) -> Callable[[str], Any]:
    """What reads `--<name> TEXT` on the command line (argparse's `type`: int, float or str,
    so that its errors read "invalid int value")."""
    return _KINDS[OPTIONS[name].kind].parse


def coerce(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """CLI or TOML values as StudyConfig keywords: `a,b` and lists become tuples, unknown keys
    are an error naming `source`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in OPTIONS:
            raise ConfigError(
                f"unknown key {key!r} in {source}; valid: {', '.join(sorted(OPTIONS))}"
            )
        kind = OPTIONS[name].kind
        out[name] = _as_tuple(name, value, ints=kind != "choices") if kind in _TUPLES else value
    return out


def _as_tuple(name: str, value: Any, *, ints: bool) -> tuple:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a comma-separated string or a list, got {value!r}")
    if ints:
        try:
            value = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be integers, got {value!r}") from None
    return tuple(value)
