"""Which study and which trial an export takes, refused in one line where the choice is unclear.

    study = open_study("sqlite:///nanonas.db", None)     # the storage's only study
    trial = pick_trial(study, number=None, max_params=300_000, max_flops=None)

- Study: the one named, or the storage's only one; several and no name is refused, listing them.
- Trial: `--trial N`; else a single-objective study's best trial (within --max-params and
  --max-flops when given); a Pareto study needs a budget, and gets the most accurate member of
  its Pareto set within it. Without one it is refused with the Pareto set listed, because which
  trade-off to ship is the user's decision, not ours.
- A pruned, failed, unfinished or over-budget trial is refused, saying why and naming the best
  complete trial. Nothing here writes anything; a storage file that does not exist is not created.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanonas import records
from nanonas.errors import ConfigError
from nanonas.storage import mask, open_storage
from nanonas.storage.urls import parse
from nanonas.study.summary import best_trials

__all__ = ["describe", "open_study", "pick_trial"]


def open_study(storage: str, study_name: str | None) -> optuna.Study:
    """The study `study_name` in `storage`, or the storage's only study when it is None."""
    target = parse(storage)  # ConfigError for a malformed URL, before anything is opened
    local = target.sqlite_file or (target.url if target.kind == "journal" else None)
    if local is not None and not Path(local).exists():
        # Opening would create an empty database: an export only reads.
        raise ConfigError(f"storage {mask(storage)!r} holds no study: {local} does not exist")
    opened = open_storage(storage)
    names = sorted(optuna.get_all_study_names(storage=opened))
    if not names:
        raise ConfigError(f"storage {mask(storage)!r} holds no study")
    if study_name is None:
        if len(names) > 1:
            raise ConfigError(
                f"storage {mask(storage)!r} holds {len(names)} studies; pass --study-name, "
                f"one of: {', '.join(names)}"
            )
        study_name = names[0]
    elif study_name not in names:
        raise ConfigError(
            f"unknown study {study_name!r} in storage {mask(storage)!r}; its studies: "
            f"{', '.join(names)}"
        )
    return optuna.load_study(study_name=study_name, storage=opened)


def describe(trial: FrozenTrial) -> str:
    """`trial 3 (accuracy 0.8123, 12,345 params, 1.2 MFLOPs)`, for one-line messages."""
    sizes = records.sizes(trial)
    parts = [f"accuracy {trial.values[0]:.4f}"] if trial.values else []
    if "params" in sizes:
        parts.append(f"{sizes['params']:,} params")
    if "flops" in sizes:
        parts.append(f"{sizes['flops'] / 1e6:.1f} MFLOPs")
    return f"trial {trial.number} ({', '.join(parts)})"


def pick_trial(
    study: optuna.Study,
    *,
    number: int | None = None,
    max_params: int | None = None,
    max_flops: int | None = None,
) -> FrozenTrial:
    """The trial to export (see the module docstring); ConfigError in one line otherwise."""
    if number is not None:
        return _numbered(study, number)
    best = best_trials(study)
    if not best:
        raise ConfigError(
            f"study {study.study_name!r} has no complete, trained trial within its budget; "
            "nothing to export"
        )
    budget = {k: v for k, v in (("params", max_params), ("flops", max_flops)) if v is not None}
    multi = len(study.directions) > 1
    if not budget:
        if multi:
            raise ConfigError(
                f"study {study.study_name!r} is a Pareto study: pass --trial N, or --max-params "
                f"/ --max-flops to take its most accurate member within them; its Pareto set: "
                + "; ".join(describe(t) for t in best)
            )
        return best[0]
    # Single objective: the most accurate trained trial within the budget, not only the best.
    pool = best if multi else _trained(study)
    within = [
        t for t in pool if all(records.size(t, key) <= limit for key, limit in budget.items())
    ]
    if not within:
        asked = ", ".join(f"--max-{key} {limit}" for key, limit in budget.items())
        what = "member of the Pareto set" if multi else "trained trial"
        smallest = min(pool, key=lambda t: tuple(records.size(t, key) for key in budget))
        raise ConfigError(
            f"no {what} of study {study.study_name!r} is within {asked}; the smallest is "
            f"{describe(smallest)}"
        )
    return max(within, key=lambda t: (t.values[0], -records.size(t, "params"), -t.number))


def _trained(study: optuna.Study) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in complete if _unusable(t) is None]


def _numbered(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        known = f"its trials are 0 to {trials[-1].number}" if trials else "it has no trials"
        raise ConfigError(f"study {study.study_name!r} has no trial {number}; {known}")
    why = _unusable(found[0])
    if why is not None:
        best = best_trials(study)
        if not best:
            hint = "the study has no complete trial to export yet"
        elif len(best) == 1:
            hint = f"its best complete trial is {describe(best[0])}"
        else:
            hint = "its Pareto set: " + "; ".join(describe(t) for t in best)
        raise ConfigError(f"trial {number} cannot be exported: {why}; {hint}")
    return found[0]


def _unusable(trial: FrozenTrial) -> str | None:
    """Why `trial` has no result to export, or None when it has one."""
    said = [r for r in records.reasons(trial) if not r.startswith("result of trial")]
    because = f" ({'; '.join(said)})" if said else ""
    if trial.state == TrialState.PRUNED:
        return f"it was pruned{because}"
    if trial.state == TrialState.FAIL:
        return f"it failed{because}"
    if trial.state != TrialState.COMPLETE:
        return f"it is {trial.state.name.lower()}, not complete"
    if records.arch(trial) is None:
        return "it has no architecture (not a nanonas trial)"
    if records.read(trial).infeasible is not None or any(v > 0 for v in trial.constraints.values()):
        return f"it was over the study's budget and never trained{because}"
    if not records.curve(trial):
        return "it never trained"
    return None
