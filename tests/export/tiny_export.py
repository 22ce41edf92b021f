"""Studies to export from, made by the real nanonas.study.run on tiny synthetic data, and an
export of the best trial; tests/conftest.py serves them as session fixtures."""

from __future__ import annotations

import optuna
import pytest

from nanonas import data, export
from nanonas.space import Architecture
from nanonas.study import StudyConfig, run

ARCH = Architecture.parse("w8:conv3x3,sep_conv3x3,dil_conv3x3,skip/conv5x5,maxpool3x3,skip,zero")


def tiny_config(folder, **overrides) -> StudyConfig:
    values = dict(
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=1,
        n_trials=2,
        storage=f"sqlite:///{folder / 's.db'}",
        progress=False,
        study_name="single",
    )
    return StudyConfig(**(values | overrides))


def add_dead_trials(study: optuna.Study) -> dict[str, int]:
    """A pruned, a failed and an over-budget trial, as nanonas records them."""
    base = {"arch": str(ARCH), "params": 1000, "flops": 10_000}
    made = {}
    for name, state, attrs, value in (
        (
            "pruned",
            "PRUNED",
            {"prune_reason": "below the median at epoch 1", "val_acc": [0.1]},
            None,
        ),
        ("failed", "FAIL", {"fail_reason": "training loss became nan in epoch 1"}, None),
        ("infeasible", "COMPLETE", {"infeasible": "params 1000 > --max-params 10"}, 0.0),
    ):
        trial = optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state),
            value=value,
            params=ARCH.params(),
            distributions=study.trials[0].distributions,
            user_attrs=base | attrs,
        )
        study.add_trial(trial)
        made[name] = study.trials[-1].number
    return made


def make_single(folder):
    """A single-objective study with 2 trained trials and a pruned, a failed and an
    over-budget one; `loads` is every data.load call the study made."""
    loads: list[dict] = []
    real = data.load

    def spy(name, **kwargs):
        loads.append({"name": name, **kwargs})
        return real(name, **kwargs)

    config = tiny_config(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load", spy)
        study = run(config)
    dead = add_dead_trials(study)
    return {
        "storage": config.storage,
        "name": config.name,
        "study": study,
        "loads": loads,
        "dead": dead,
        "folder": folder,
    }


def make_pareto(folder):
    config = tiny_config(folder, objectives=("accuracy", "params"), study_name="pareto", n_trials=3)
    study = run(config)
    return {"storage": config.storage, "name": config.name, "study": study, "folder": folder}


def make_export(single, out):
    """The single study's best trial, exported once (1 epoch), and the load_model of it."""
    folder = export.export(
        storage=single["storage"],
        study_name=single["name"],
        out=out,
        epochs=1,
        device="cpu",
        progress=False,
    )
    return {"folder": folder, "model": export.load_model(folder)}
