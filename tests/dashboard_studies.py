"""Tiny studies that nanonas really ran, for the dashboard, report and browser tests: synthetic
data, width 4, 2 epochs, CPU; each with queued networks so that some are over the budget.
tests/conftest.py serves them as session fixtures (training is the slow part)."""

from __future__ import annotations

from pathlib import Path

import optuna

from nanonas import records
from nanonas.model import NanoNet, count_params
from nanonas.space import Architecture
from nanonas.study import StudyConfig, run

SMALL = [
    Architecture.parse("w4:conv3x3,skip,zero,zero/conv3x3,zero,zero,zero"),
    Architecture.parse("w4:sep_conv3x3,skip,zero,zero/maxpool3x3,zero,zero,zero"),
    Architecture.parse("w4:conv3x3,sep_conv3x3,zero,zero/skip,conv3x3,zero,zero"),
    Architecture.parse("w4:dil_conv3x3,zero,zero,zero/sep_conv3x3,zero,zero,zero"),
]
BIG = Architecture.parse("w4:conv5x5,conv5x5,conv5x5,conv5x5/conv5x5,conv5x5,conv5x5,conv5x5")


def _params(arch: Architecture) -> int:
    return count_params(NanoNet(arch, num_classes=10, in_channels=3))


def make(folder: Path, *, objectives: tuple[str, ...]) -> dict:
    """Run a study of the 4 SMALL networks and one BIG one over --max-params; then add a pruned
    trial as nanonas records it (pruning is not predictable on 2 epochs)."""
    name = "pareto" if len(objectives) > 1 else "single"
    limit = max(_params(a) for a in SMALL)
    assert _params(BIG) > limit
    config = StudyConfig(
        dataset="synthetic",
        widths=(4,),
        batch_size=64,
        device="cpu",
        epochs=2,
        n_trials=len(SMALL) + 1,
        storage=f"sqlite:///{folder / 's.db'}",
        progress=False,
        study_name=name,
        objectives=objectives,
        max_params=limit,
    )
    study = optuna.create_study(
        storage=config.storage,
        study_name=name,
        directions=[records.OBJECTIVES[o] for o in objectives],
    )
    for arch in [*SMALL[:2], BIG, *SMALL[2:]]:
        study.enqueue_trial(arch.params())
    study = run(config)
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=SMALL[0].params(),
        distributions=study.trials[0].distributions,
        user_attrs={
            "arch": str(SMALL[0]),
            "params": _params(SMALL[0]),
            "flops": 1000,
            "val_acc": [0.1],
            "prune_reason": "below the median at epoch 1",
        },
    )
    study.add_trial(pruned)
    return {"storage": config.storage, "name": name, "study": study, "folder": folder}
