"""nanonas.study.summary: the best trial or the Pareto set, and the end-of-run table."""

from __future__ import annotations

import optuna
from tiny import GOOD, GOODS, WEAK, tiny

from nanonas.model import NanoNet, count_params
from nanonas.study import best_trials, run, summary


def test_two_objectives_give_a_pareto_set(tmp_path):
    config = tiny(tmp_path, objectives=("accuracy", "params"), n_trials=4, epochs=1, widths=(8, 16))
    study = run(config)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        assert t.values == [t.user_attrs["val_acc"][-1], t.user_attrs["params"]]
    front = best_trials(study)
    assert front and all(t in study.best_trials for t in front)
    assert "Pareto set" in summary(study)


def test_tied_trials_of_a_single_objective_study_give_one_best_trial():
    # Small validation sets make equal accuracies common; a tie is not a Pareto set.
    study = optuna.create_study(direction="maximize")
    for arch, acc in [(GOOD, 0.5), (GOODS[3], 0.75), (WEAK, 0.75)]:
        attrs = {"arch": str(arch), "params": count_params(NanoNet(arch)), "flops": 1e6}
        attrs |= {"val_acc": [acc], "train_seconds": 1.0}
        study.add_trial(optuna.trial.create_trial(value=acc, user_attrs=attrs))
    assert count_params(NanoNet(WEAK)) < count_params(NanoNet(GOODS[3]))
    assert [t.number for t in best_trials(study)] == [2]  # the smaller of the tied two
    text = summary(study)
    assert "best trial:" in text and "Pareto set" not in text
    assert str(WEAK) in text and str(GOODS[3]) not in text


def test_the_pareto_set_leaves_out_dominated_over_budget_and_reused_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [  # (accuracy, params, extra attrs, constraint)
        (0.9, 500, {}, None),  # front: the most accurate
        (0.8, 100, {}, None),  # front: the smallest trained
        (0.7, 300, {}, None),  # dominated by the second
        (0.9, 500, {"reused_from": 0}, None),  # a duplicate: its original stands for it
        (0.95, 50, {}, 1.0),  # over budget: no result, whatever its values
    ]
    for acc, params, extra, violation in rows:
        attrs = {"arch": str(GOOD), "params": params, "flops": 1, "val_acc": [acc]}
        attrs |= {"train_seconds": 1.0} | extra
        system = {} if violation is None else {"constraints:params": violation}
        study.add_trial(
            optuna.trial.create_trial(values=[acc, params], user_attrs=attrs, system_attrs=system)
        )
    assert [t.number for t in best_trials(study)] == [0, 1]
