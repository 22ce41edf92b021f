"""nanonas.study.objective: one trial, from sampling to its record, on tiny real training."""

from __future__ import annotations

import optuna
import pytest
from tiny import GOOD, GOODS, WEAK, WEAK_BIG, CountingTrain, study_with_queue, tiny

from nanonas import records, space
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.study import best_trials, run, summary

# Two encodings of one network: zeros moved within their stage.
ZEROS_LAST = space.Architecture.parse("w8:conv3x3,skip,zero,zero/sep_conv3x3,zero,zero,zero")
ZEROS_MOVED = space.Architecture.parse("w8:zero,conv3x3,zero,skip/zero,sep_conv3x3,zero,zero")


@pytest.mark.parametrize("pruner", ["median", "sha"])
def test_single_objective_pruning_stops_a_weak_trial_early(tmp_path, pruner):
    config = tiny(tmp_path, pruner=pruner, epochs=4, n_trials=6, sampler="random")
    study_with_queue(config, [*GOODS, WEAK])
    study = run(config)
    weak = study.trials[5]
    assert weak.user_attrs["arch"] == str(WEAK)
    assert weak.state == optuna.trial.TrialState.PRUNED
    epochs_run = len(weak.user_attrs["val_acc"])
    assert epochs_run < config.epochs
    assert sorted(weak.intermediate_values) == list(range(1, epochs_run + 1))
    expected = {"median": "below the median", "sha": "outside the top"}[pruner]
    assert expected in weak.user_attrs["prune_reason"]


def test_a_pareto_study_prunes_a_dominated_trial_early_and_spares_a_small_one(tmp_path):
    config = tiny(
        tmp_path,
        objectives=("accuracy", "params"),
        widths=(8, 24),
        epochs=4,
        n_trials=7,
        sampler="random",
    )
    study_with_queue(config, [*GOODS, WEAK, WEAK_BIG])
    study = run(config)
    small, big = study.trials[5], study.trials[6]
    assert big.user_attrs["arch"] == str(WEAK_BIG)
    assert big.state == optuna.trial.TrialState.PRUNED
    assert 2 <= len(big.user_attrs["val_acc"]) < config.epochs  # its partial curve is kept
    assert "below the median" in big.user_attrs["prune_reason"]
    # The weak but smallest network has no smaller peers to lose against: it may be optimal.
    assert small.state == optuna.trial.TrialState.COMPLETE
    front = best_trials(study)
    assert small in front and big not in front
    assert "Pareto set" in summary(study)


def test_no_pruner_trains_every_trial_to_the_end(tmp_path):
    config = tiny(tmp_path, pruner="none", epochs=3, n_trials=6)
    study_with_queue(config, [*GOODS, WEAK])
    study = run(config)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(len(t.user_attrs["val_acc"]) == 3 for t in study.trials)


def test_an_over_budget_architecture_is_never_trained(tmp_path, monkeypatch):
    trained = CountingTrain(monkeypatch)
    limit = count_params(NanoNet(GOOD)) - 1  # GOOD is one parameter over, WEAK well within
    config = tiny(tmp_path, n_trials=2, epochs=1, max_params=limit, sampler="random")
    study_with_queue(config, [GOOD, WEAK])
    study = run(config)
    over, within = study.trials
    assert trained.archs == [str(WEAK)]
    assert over.state == optuna.trial.TrialState.COMPLETE  # so that the sampler learns from it
    assert over.constraints == {"params": 1.0}  # > 0: infeasible
    assert "over budget (params" in over.user_attrs["infeasible"]
    assert "val_acc" not in over.user_attrs and "train_seconds" not in over.user_attrs
    assert within.constraints["params"] < 0 and len(within.user_attrs["val_acc"]) == 1
    assert best_trials(study) == [within]


def test_flops_budget_in_a_pareto_study(tmp_path, monkeypatch):
    trained = CountingTrain(monkeypatch)
    flops = count_flops(GOOD, image_size=16)
    config = tiny(
        tmp_path, objectives=("accuracy", "flops"), n_trials=2, epochs=1, max_flops=flops - 1
    )
    study_with_queue(config, [GOOD, WEAK])
    study = run(config)
    assert trained.archs == [str(WEAK)]
    assert study.trials[0].constraints == {"flops": 1.0}
    assert study.trials[1].values[1] == study.trials[1].user_attrs["flops"]


def test_a_duplicate_architecture_is_not_trained_twice(tmp_path, monkeypatch):
    trained = CountingTrain(monkeypatch)
    config = tiny(tmp_path, n_trials=3, epochs=1, pruner="none", sampler="random")
    study_with_queue(config, [GOOD, WEAK, GOOD])
    study = run(config)
    first, _, again = study.trials
    assert trained.archs == [str(GOOD), str(WEAK)]
    assert again.state == optuna.trial.TrialState.COMPLETE
    assert again.value == first.value and again.user_attrs["reused_from"] == 0
    assert again.user_attrs["val_acc"] == first.user_attrs["val_acc"]
    assert best_trials(study) != [again]  # the original stands for both
    assert "1 reused a duplicate's result" in summary(study)


def test_an_equivalent_encoding_is_the_same_network_and_is_not_trained_again(tmp_path, monkeypatch):
    """Zeros moved within a stage build the same network: it reuses the first one's result."""
    trained = CountingTrain(monkeypatch)
    first, moved = ZEROS_LAST, ZEROS_MOVED
    config = tiny(tmp_path, n_trials=3, epochs=1, pruner="none", sampler="random")
    study_with_queue(config, [first, moved, WEAK])
    study = run(config)
    assert trained.archs == [str(first), str(WEAK)]
    again = study.trials[1]
    assert again.user_attrs["arch"] == str(moved) and again.user_attrs["reused_from"] == 0
    assert again.user_attrs["canonical"] == str(first.canonical()) == records.canonical(again)
    assert again.value == study.trials[0].value


@pytest.mark.parametrize("sampler", ["evolution", "cmaes", "random"])
def test_a_sequential_run_never_trains_one_network_twice(tmp_path, monkeypatch, sampler):
    """Width 8 alone, so the samplers' search is over the ops; random search proposes
    duplicates by chance, nanonas's own avoid them: either way nothing trains twice."""
    trained = CountingTrain(monkeypatch)
    config = tiny(tmp_path, n_trials=8, epochs=1, pruner="none", sampler=sampler)
    study_with_queue(config, [ZEROS_MOVED, ZEROS_LAST])
    run(config)
    canon = [str(space.Architecture.parse(a).canonical()) for a in trained.archs]
    assert len(canon) == len(set(canon))


def test_a_duplicate_of_a_pruned_trial_is_pruned_without_training(tmp_path, monkeypatch):
    config = tiny(tmp_path, n_trials=1, epochs=1, pruner="none", sampler="random")
    study = optuna.create_study(
        storage=config.storage, study_name=config.name, direction="maximize"
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params=GOOD.params(),
            distributions=space.distributions((8,)),
            user_attrs={"arch": str(GOOD), "val_acc": [0.2], "device": "cpu"},
        )
    )
    study.enqueue_trial(GOOD.params())
    trained = CountingTrain(monkeypatch)
    study = run(config)
    assert trained.archs == []
    again = study.trials[1]
    assert again.state == optuna.trial.TrialState.PRUNED
    assert again.user_attrs["prune_reason"] == "same network as trial 0, which was pruned"


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    study = run(tiny(tmp_path, lr=1e4, n_trials=2, epochs=1))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "loss became nan" in study.trials[0].user_attrs["fail_reason"]


def test_every_trial_names_its_run_entry_and_its_seed(tmp_path):
    study = run(tiny(tmp_path, n_trials=2, epochs=1, seed=7))
    entries = records.runs(study.user_attrs)
    for t in study.trials:
        record = records.read(t)
        assert record.run in entries and entries[record.run]["settings"]["seed"] == 7
        assert record.seed == 7 + t.number
        assert record.worker == f"{entries[record.run]['host']}:{entries[record.run]['pid']}"
