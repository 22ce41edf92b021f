"""nanonas.export.pick: which study and which trial; each unclear choice refused in one line."""

from __future__ import annotations

import optuna
import pytest

from nanonas import records
from nanonas.errors import ConfigError
from nanonas.export.pick import open_study, pick_trial
from nanonas.study import best_trials


def test_the_only_study_is_taken_and_several_are_listed(single, tmp_path):
    assert open_study(single["storage"], None).study_name == single["name"]
    optuna.create_study(storage=single["storage"], study_name="another")
    try:
        with pytest.raises(
            ConfigError, match="holds 2 studies; pass --study-name, one of: another, single"
        ):
            open_study(single["storage"], None)
    finally:
        optuna.delete_study(study_name="another", storage=single["storage"])


def test_an_unknown_study_lists_the_studies(single):
    with pytest.raises(ConfigError, match="unknown study 'nope' .*; its studies: single$"):
        open_study(single["storage"], "nope")


def test_a_missing_storage_file_is_refused_and_not_created(tmp_path):
    with pytest.raises(ConfigError, match="holds no study: .*none.db does not exist"):
        open_study(f"sqlite:///{tmp_path / 'none.db'}", None)
    assert not (tmp_path / "none.db").exists()


def test_single_objective_takes_the_best_trial(single):
    assert pick_trial(single["study"]).number == best_trials(single["study"])[0].number


def test_trial_n_takes_that_trial_and_an_unknown_number_is_refused(single):
    assert pick_trial(single["study"], number=1).number == 1
    with pytest.raises(ConfigError, match="has no trial 99; its trials are 0 to 4"):
        pick_trial(single["study"], number=99)


@pytest.mark.parametrize(
    "kind, why",
    [
        ("pruned", r"it was pruned \(below the median at epoch 1\)"),
        ("failed", r"it failed \(training loss became nan in epoch 1\)"),
        ("infeasible", r"over the study's budget and never trained \(params 1000 >"),
    ],
)
def test_a_dead_trial_is_refused_saying_why_and_naming_the_best(single, kind, why):
    number = single["dead"][kind]
    best = best_trials(single["study"])[0].number
    with pytest.raises(ConfigError) as e:
        pick_trial(single["study"], number=number)
    line = str(e.value)
    assert line.startswith(f"trial {number} cannot be exported: ")
    assert f"its best complete trial is trial {best} (accuracy " in line
    assert len(line.splitlines()) == 1
    import re

    assert re.search(why, line), line


def test_a_pareto_study_without_a_budget_lists_its_pareto_set(pareto):
    front = best_trials(pareto["study"])
    with pytest.raises(ConfigError) as e:
        pick_trial(pareto["study"])
    line = str(e.value)
    assert "is a Pareto study: pass --trial N, or --max-params" in line
    for t in front:
        assert (
            f"trial {t.number} (accuracy {t.values[0]:.4f}, {t.user_attrs['params']:,} params"
            in line
        )


def test_a_pareto_budget_takes_the_most_accurate_member_within_it(pareto):
    front = best_trials(pareto["study"])
    smallest = min(records.size(t, "params") for t in front)
    chosen = pick_trial(pareto["study"], max_params=int(smallest))
    assert records.size(chosen, "params") == smallest
    everything = pick_trial(pareto["study"], max_params=10**9, max_flops=10**12)
    assert everything.values[0] == max(t.values[0] for t in front)


def test_a_pareto_budget_no_member_meets_is_refused_naming_the_smallest(pareto):
    with pytest.raises(
        ConfigError,
        match=r"no member of the Pareto set of study 'pareto' is "
        r"within --max-params 10; the smallest is trial \d+",
    ):
        pick_trial(pareto["study"], max_params=10)
