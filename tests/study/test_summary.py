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


def test_next_steps_name_the_dashboard_and_the_export_of_the_best_trial(tmp_path):
    from nanonas.study import next_steps

    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = optuna.create_study(storage=url, study_name="s 1", direction="maximize")
    text = next_steps(study, url)
    where = tmp_path / "x-artifacts"  # beside the database file, as the run put them
    assert f"  optuna-dashboard {url} --artifact-dir {where}    #" in text
    assert "nanonas.export" not in text
    attrs = {"arch": str(GOOD), "params": 10, "flops": 1e6, "val_acc": [0.5], "train_seconds": 1.0}
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    text = next_steps(study, url)
    assert f"python -m nanonas.export --storage {url} --study-name 's 1' --trial 0" in text
    # a bare postgresql:// is shown with the driver nanonas installs, the password masked
    text = next_steps(study, "postgresql://u:secret@db/nas")
    assert "optuna-dashboard 'postgresql+psycopg2://u:***@db/nas'" in text and "secret" not in text
    assert "--artifact-dir nanonas-artifacts" in text  # a database: the working directory
    text = next_steps(study, url, artifacts="/shared/my pics")
    assert "--artifact-dir '/shared/my pics'" in text


def test_an_over_budget_trial_says_so_in_its_line_and_in_a_table(capsys):
    from nanonas.study import StudyConfig, format_table
    from nanonas.study.progress import Progress

    study = optuna.create_study(direction="maximize")
    why = "over budget (params 10 > 5); not trained"
    attrs = {"arch": str(GOOD), "params": 10, "flops": 1e6, "infeasible": why}
    study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs=attrs))
    attrs = {"arch": str(WEAK), "params": 4, "flops": 1e6, "val_acc": [0.5], "train_seconds": 1.0}
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    progress = Progress(StudyConfig(dataset="synthetic", n_trials=2))
    for t in study.trials:
        progress.trial_done(study, t)
    progress.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial")]
    assert "COMPLETE  over budget  params" in lines[0] and "nan" not in lines[0]
    assert "COMPLETE  acc 0.5000  params" in lines[1]
    table = format_table(study.trials).splitlines()
    assert table[1].split()[:3] == ["0", "over", "budget"] and "nan" not in table[1]
    assert table[2].split()[:3] == ["1", "0.5000", "4"]
