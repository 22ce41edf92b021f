"""The trial record: every user attribute nanonas writes on a trial or a study, defined once.

The objective writes a trial's record with the `write_*` helpers; pruning, the samplers, the
summary (and export, report, the dashboard) read it back with the read helpers. No other module
spells an attribute name, so a key is renamed here or nowhere.

Trial user attributes (`TRIAL_KEYS` holds the types):

| key           | type        | what                                                          |
|---------------|-------------|---------------------------------------------------------------|
| arch          | str         | the architecture's string form (`Architecture.parse` reads it) |
| canonical     | str         | the string form of the network it builds (`arch.canonical()`)  |
| params        | int         | parameters, counted before training                           |
| flops         | int         | forward FLOPs per image, counted before training              |
| worker        | str         | host:pid of the process that ran the trial                    |
| run           | str         | the key of that process's run entry in the study (below)      |
| seed          | int         | the seed it trained with (the run's --seed + trial number)    |
| val_acc       | list[float] | validation accuracy after each epoch so far                   |
| train_seconds | float       | wall time of training and evaluation                          |
| device        | str         | the device it trained on                                      |
| fail_reason   | str         | a FAIL: why (loss diverged, out of memory, interrupted)        |
| prune_reason  | str         | a PRUNED trial: why (it keeps its partial `val_acc`)           |
| infeasible    | str         | over a budget: never trained, accuracy 0                       |
| reused_from   | int         | a duplicate: the number of the trial whose result it took      |
| alive         | float       | a RUNNING trial's last heartbeat (seconds since the epoch)     |

Study user attributes: `recipe` (what makes trials comparable, fixed at creation; see
nanonas.study.recipe), `config` (the creating run's settings), `space`, `data` and `versions`,
all written once when the study is created; and one `run:<start>:<host>:<pid>` entry per process
that joined the study, each under its own key so that processes on several machines never
overwrite each other; and one `export:<time>` entry per export of a trial (`python -m
nanonas.export`): trial number, test accuracy with and without flips, epochs, folder, time.
Optuna refuses to change a finished trial, and the trial's values are the search's
measurement, so the test score is kept beside it, in the study, never in the trial.

    records.write_curve(trial, [0.41, 0.52])       # in the objective
    records.curve(frozen_trial)                     # -> [0.41, 0.52]; [] when never trained
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nanonas.space import Architecture

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "METRIC_NAMES",
    "OBJECTIVES",
    "SIZE_KEYS",
    "STUDY_KEYS",
    "TRIAL_KEYS",
    "TrialRecord",
    "add_export",
    "add_run",
    "alive",
    "architecture",
    "arch",
    "canonical",
    "curve",
    "exports",
    "last_acc",
    "read",
    "reasons",
    "recipe",
    "reused_from",
    "run_of",
    "runs",
    "size",
    "sizes",
    "study_config",
    "study_data",
    "study_space",
    "trained",
    "values",
    "write_alive",
    "write_candidate",
    "write_creation",
    "write_curve",
    "write_failure",
    "write_infeasible",
    "write_pruned",
    "write_reuse",
    "write_training",
]

TRIAL_KEYS: dict[str, type | tuple[type, ...]] = {
    "arch": str,
    "canonical": str,
    "params": int,
    "flops": int,
    "worker": str,
    "run": str,
    "seed": int,
    "val_acc": list,
    "train_seconds": float,
    "device": str,
    "fail_reason": str,
    "prune_reason": str,
    "infeasible": str,
    "reused_from": int,
    "alive": float,
}
STUDY_KEYS: dict[str, type] = {
    "recipe": dict,
    "config": dict,
    "space": dict,
    "data": dict,
    "versions": dict,
}
_RUN_PREFIX = "run:"  # + <start>:<host>:<pid>, one key per process
_EXPORT_PREFIX = "export:"  # + <time>, one key per export

# objective name -> Optuna direction. Accuracy comes first, then any size objectives, which are
# also trial attributes (SIZE_KEYS).
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "params": "minimize", "flops": "minimize"}
SIZE_KEYS = ("params", "flops")
# objective name -> the name the study gives its values (`study.set_metric_names`), which is
# what optuna-dashboard labels its axes with: the trial attribute each value comes from.
METRIC_NAMES: dict[str, str] = {"accuracy": "val_acc", "params": "params", "flops": "flops"}


def _set(trial: optuna.Trial, key: str, value: Any) -> None:
    if not isinstance(value, TRIAL_KEYS[key]) or isinstance(value, bool):
        raise TypeError(f"trial attribute {key!r} must be {TRIAL_KEYS[key]}, got {value!r}")
    trial.set_user_attr(key, value)


# --- writing a trial (the objective) ----------------------------------------------------------


def write_candidate(
    trial: optuna.Trial,
    *,
    arch: Architecture,
    params: int,
    flops: int,
    worker: str,
    run: str,
    seed: int,
) -> None:
    """What is known before training: the architecture, its sizes, who runs it, its seed."""
    _set(trial, "arch", str(arch))
    _set(trial, "canonical", str(arch.canonical()))
    _set(trial, "worker", worker)
    _set(trial, "run", run)
    _set(trial, "seed", seed)
    _set(trial, "params", params)
    _set(trial, "flops", flops)


def write_curve(trial: optuna.Trial, val_acc: Sequence[float]) -> None:
    """The accuracies after every epoch so far (the whole list, rewritten each epoch)."""
    _set(trial, "val_acc", [float(a) for a in val_acc])


def write_training(trial: optuna.Trial, *, seconds: float, device: str) -> None:
    _set(trial, "train_seconds", round(float(seconds), 3))
    _set(trial, "device", device)


def write_failure(trial: optuna.Trial, reason: str) -> None:
    _set(trial, "fail_reason", reason)


def write_pruned(trial: optuna.Trial, reason: str) -> None:
    _set(trial, "prune_reason", reason)


def write_infeasible(trial: optuna.Trial, reason: str) -> None:
    _set(trial, "infeasible", reason)


def write_reuse(trial: optuna.Trial, original: FrozenTrial) -> None:
    """Give `trial` the measured result of `original`, an earlier trial of its architecture."""
    _set(trial, "reused_from", original.number)
    write_curve(trial, curve(original))
    write_training(trial, seconds=0.0, device=original.user_attrs.get("device", ""))


def write_alive(trial: optuna.Trial, when: float) -> None:
    """The running trial's heartbeat: its process was alive at `when` (time.time())."""
    _set(trial, "alive", float(when))


# --- reading a trial (pruning, samplers, summary, export, report) -----------------------------


def alive(trial: FrozenTrial) -> float | None:
    """When the trial's process last beat (time.time()), or None if it never did."""
    when = trial.user_attrs.get("alive")
    return float(when) if when is not None else None


def arch(trial: FrozenTrial) -> str | None:
    """The architecture string, or None for a trial nanonas did not sample."""
    return trial.user_attrs.get("arch")


def canonical(trial: FrozenTrial) -> str | None:
    """The string form of the network the trial built (equal for equivalent encodings), or
    None for a trial nanonas did not sample. Derived from `arch` for trials recorded before
    nanonas wrote this key."""
    text = trial.user_attrs.get("canonical")
    if text is None and arch(trial) is not None:
        text = str(architecture(trial).canonical())
    return text


def architecture(trial: FrozenTrial) -> Architecture:
    """The trial's Architecture; ValueError for a trial without one."""
    text = arch(trial)
    if text is None:
        raise ValueError(f"trial {trial.number} has no architecture")
    return Architecture.parse(text)


def curve(trial: FrozenTrial) -> list[float]:
    """Validation accuracy after each epoch; empty for a trial that never trained."""
    value = trial.user_attrs.get("val_acc")
    return value if isinstance(value, list) else []


def last_acc(trial: FrozenTrial) -> float | None:
    """The accuracy after the last epoch it trained, None if it never trained."""
    accuracies = curve(trial)
    return float(accuracies[-1]) if accuracies else None


def size(trial: FrozenTrial, key: str) -> float:
    """Its `key` (params or flops); infinite when unknown, so it is never thought small."""
    return trial.user_attrs.get(key, math.inf)


def sizes(trial: FrozenTrial) -> dict[str, int]:
    return {key: trial.user_attrs[key] for key in SIZE_KEYS if key in trial.user_attrs}


def reused_from(trial: FrozenTrial) -> int | None:
    """The trial whose result this duplicate took, or None when it trained (or not) itself."""
    return trial.user_attrs.get("reused_from")


def trained(trial: FrozenTrial) -> bool:
    """Whether the trial measured a curve of its own (not a duplicate's, not over budget)."""
    return bool(curve(trial)) and reused_from(trial) is None


def reasons(trial: FrozenTrial) -> list[str]:
    """Why the trial ended as it did, as nanonas recorded it: failed, pruned, over budget,
    reused a duplicate's result (a reused pruned trial has two); empty for a plain result."""
    attrs = trial.user_attrs
    said = [attrs[key] for key in ("fail_reason", "prune_reason", "infeasible") if key in attrs]
    if "reused_from" in attrs:
        said.append(f"result of trial {attrs['reused_from']}, same network")
    return said


def run_of(trial: FrozenTrial) -> str | None:
    """The key of the study's run entry of the process that ran the trial."""
    return trial.user_attrs.get("run")


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """Every attribute of a trial's record, typed; None where the trial has none."""

    number: int
    state: str  # Optuna's TrialState name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    arch: str | None = None
    canonical: str | None = None
    params: int | None = None
    flops: int | None = None
    worker: str | None = None
    run: str | None = None
    seed: int | None = None
    val_acc: tuple[float, ...] = ()
    train_seconds: float | None = None
    device: str | None = None
    fail_reason: str | None = None
    prune_reason: str | None = None
    infeasible: str | None = None
    reused_from: int | None = None
    alive: float | None = None


def read(trial: FrozenTrial) -> TrialRecord:
    """The whole record of `trial`, for code that shows or exports trials."""
    attrs = {key: trial.user_attrs[key] for key in TRIAL_KEYS if key in trial.user_attrs}
    attrs["val_acc"] = tuple(curve(trial))
    return TrialRecord(number=trial.number, state=trial.state.name, **attrs)


def values(accuracy: float, trial_sizes: Mapping[str, int], objectives: Sequence[str]) -> Any:
    """A trial's objective values: the accuracy alone, or it followed by the size objectives."""
    if len(objectives) == 1:
        return accuracy
    return (accuracy, *(float(trial_sizes[name]) for name in objectives[1:]))


# --- the study's record --------------------------------------------------------------------


def write_creation(
    study: optuna.Study,
    *,
    recipe: dict[str, Any],
    config: dict[str, Any],
    space: dict[str, Any],
    data: dict[str, Any],
    versions: dict[str, Any],
) -> None:
    """Write the study attributes fixed at creation that the study does not have yet; one it
    has is never overwritten (a resume, or another process that created it first)."""
    have = study.user_attrs
    created = {
        "recipe": recipe,
        "config": config,
        "space": space,
        "data": data,
        "versions": versions,
    }
    for key, value in created.items():
        if key not in have:
            study.set_user_attr(key, value)


def _study_dict(attrs: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = attrs.get(key)
    return value if isinstance(value, dict) else None


def recipe(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recipe in a study's user attributes; None if it has none (made by an older nanonas,
    or by plain Optuna)."""
    return _study_dict(attrs, "recipe")


def study_config(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings of the run that created the study (the last run's, before nanonas 0.2)."""
    return _study_dict(attrs, "config")


def study_space(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The search space the study was created with (version, ops); empty if unknown."""
    return _study_dict(attrs, "space") or {}


def study_data(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The sizes of the study's data (train, val, classes, image_size); empty if unknown."""
    return _study_dict(attrs, "data") or {}


def add_run(study: optuna.Study, *, started: str, host: str, pid: int, entry: dict) -> str:
    """Record this process's run entry under a key of its own; return the key."""
    key = f"{_RUN_PREFIX}{started}:{host}:{pid}"
    study.set_user_attr(key, {"started": started, "host": host, "pid": pid, **entry})
    return key


def runs(attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run entry in a study's user attributes, oldest first."""
    return {k: attrs[k] for k in sorted(attrs) if k.startswith(_RUN_PREFIX)}


def add_export(
    study: optuna.Study,
    *,
    when: str,
    trial: int,
    test_acc: float,
    test_acc_flip: float,
    epochs: int,
    folder: str,
) -> str:
    """Record that trial `trial` was retrained, tested and exported into `folder`; return the
    key. `when` is the export's UTC time in ISO form (microseconds: two exports never collide)."""
    key = f"{_EXPORT_PREFIX}{when}"
    entry = {
        "trial": int(trial),
        "test_acc": float(test_acc),
        "test_acc_flip": float(test_acc_flip),
        "epochs": int(epochs),
        "folder": str(folder),
        "time": when,
    }
    study.set_user_attr(key, entry)
    return key


def exports(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every export entry in a study's user attributes, oldest first."""
    return [attrs[k] for k in sorted(attrs) if k.startswith(_EXPORT_PREFIX)]
