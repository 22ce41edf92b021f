"""nanonas.samplers.local: local search from the best architecture so far."""

from __future__ import annotations

import optuna
import pytest
from landscape import (
    check_concentrates_far_faster_than_random,
    check_multi_objective_finds_a_far_better_pareto_set_than_random,
    check_three_objectives_accuracy_params_and_flops,
)

from nanonas import space
from nanonas.samplers.local import LocalSearchSampler


@pytest.mark.parametrize("seed", [0, 1])
def test_concentrates_far_faster_than_random(seed):
    check_concentrates_far_faster_than_random("local", seed)


def test_multi_objective_finds_a_far_better_pareto_set_than_random():
    check_multi_objective_finds_a_far_better_pareto_set_than_random("local")


def test_three_objectives_accuracy_params_and_flops():
    check_three_objectives_accuracy_params_and_flops("local")


def test_the_guide_weighs_each_choice_by_how_much_more_often_the_best_trials_chose_it():
    # Eight trials, one op in every block; the best quarter (two) chose conv3x3 and conv5x5,
    # the rest six other ops, skip among them. Counts start at 1 over the 9 ops, so for any
    # block l(conv3x3) = 2/11, g(conv3x3) = 1/15, l(skip) = 1/11, g(skip) = 2/15.
    sampler = LocalSearchSampler(search_space=space.distributions(), seed=0, guide=3.0)
    ops = ["conv3x3", "conv5x5", "sep_conv3x3", "sep_conv5x5", "dil_conv3x3", "maxpool3x3"]
    ops += ["avgpool3x3", "skip"]
    ranked = [(0,) + (space.OP_NAMES.index(op),) * 8 for op in ops]  # best first; width 24
    prefer = sampler._preference(ranked)
    block = prefer[1]  # the width comes first in the space
    conv, skip = block[space.OP_NAMES.index("conv3x3")], block[space.OP_NAMES.index("skip")]
    assert conv == pytest.approx(((2 / 11) / (1 / 15)) ** 3)
    assert skip == pytest.approx(((1 / 11) / (2 / 15)) ** 3)
    assert block[space.OP_NAMES.index("zero")] == pytest.approx(((1 / 11) / (1 / 15)) ** 3)
    unguided = LocalSearchSampler(search_space=space.distributions(), seed=0, guide=0.0)
    assert set(unguided._preference(ranked)[1]) == {1.0}


@pytest.mark.parametrize("seed", range(5))
def test_a_guided_search_climbs_from_the_best_trial_towards_its_choices(seed):
    # After 5 random trials, every proposal of a single-objective study is a one-change
    # neighbour of some finished trial or (explore) a guided draw; none repeats a network.
    sampler = LocalSearchSampler(
        search_space=space.distributions(), seed=seed, n_startup=5, guide=3.0, explore=0.0
    )
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: float(sum(op.startswith("conv") for op in space.sample(t).ops)), 30)
    archs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(archs)) == 30
    for i, t in enumerate(study.trials[5:], start=5):
        nearest = min(
            sum(a != b for a, b in zip(t.params.values(), s.params.values(), strict=True))
            for s in study.trials[:i]
        )
        assert nearest <= 1
