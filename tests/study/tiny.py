"""Tiny studies for the nanonas.study tests: synthetic 16x16 data, width 8, a few epochs, CPU."""

from __future__ import annotations

from pathlib import Path

import optuna

from nanonas import records
from nanonas.space import Architecture
from nanonas.study import StudyConfig, objective

GOOD = Architecture.parse("w8:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,conv3x3,skip")
# Five different good networks: a duplicate would reuse its original's result, not train.
GOODS = [
    Architecture.from_ops((*GOOD.ops[:7], last), 8)
    for last in ("skip", "conv3x3", "sep_conv3x3", "conv5x5", "dil_conv3x3")
]
WEAK = Architecture.parse("w8:zero,zero,zero,zero/zero,zero,zero,zero")
# As weak, but larger than every good network (at width 24): nothing excuses its accuracy.
WEAK_BIG = Architecture.parse("w24:zero,zero,zero,zero/zero,zero,zero,zero")


def tiny(tmp_path: Path, **overrides) -> StudyConfig:
    values = dict(
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=2,
        n_trials=3,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        progress=False,
    )
    return StudyConfig(**(values | overrides))


def study_with_queue(config: StudyConfig, archs: list[Architecture]) -> None:
    """Create the study (as plain Optuna would) with these architectures queued first."""
    study = optuna.create_study(
        storage=config.storage,
        study_name=config.name,
        directions=[records.OBJECTIVES[o] for o in config.objectives],
    )
    for arch in archs:
        study.enqueue_trial(arch.params())


class CountingTrain:
    """The objective's train(), recording which architectures really trained."""

    def __init__(self, monkeypatch):
        self.archs: list[str] = []
        real = objective.train

        def counting(arch, *args, **kwargs):
            self.archs.append(str(arch))
            return real(arch, *args, **kwargs)

        monkeypatch.setattr(objective, "train", counting)
