"""nanonas.samplers.hybrid: the surrogate leads, then takes turns with Optuna's TPE."""

from __future__ import annotations

import random

import optuna
import pytest
from landscape import (
    check_concentrates_far_faster_than_random,
    check_multi_objective_finds_a_far_better_pareto_set_than_random,
    check_three_objectives_accuracy_params_and_flops,
    hits,
    score,
)
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from nanonas import space
from nanonas.samplers import HybridSampler, SurrogateSampler
from nanonas.samplers.history import Space


@pytest.mark.parametrize("seed", [0, 1])
def test_concentrates_far_faster_than_random(seed):
    check_concentrates_far_faster_than_random("hybrid", seed)


def test_multi_objective_finds_a_far_better_pareto_set_than_random():
    check_multi_objective_finds_a_far_better_pareto_set_than_random("hybrid")


def test_three_objectives_accuracy_params_and_flops():
    check_three_objectives_accuracy_params_and_flops("hybrid")


def _replay(trials: list[optuna.trial.FrozenTrial]) -> tuple[optuna.Study, FrozenTrial]:
    """A study holding `trials` and the next trial, running: what a sampler saw when it
    proposed that one. (A real trial, not a stub: TPE writes its constant-liar attrs to it.)"""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler())
    study.add_trials(trials)
    study.ask()
    return study, study.trials[-1]


def test_the_surrogate_leads_then_takes_every_other_turn_and_tpe_the_rest():
    """Replayed proposal by proposal: trial n is what a fresh SurrogateSampler proposes from
    trials 0..n-1 when n < handoff or n is even, and otherwise what a TPESampler with the same
    seed, asked on the TPE turns in order, proposes (moved to an untaken network if taken)."""
    distributions = space.distributions()
    hybrid = HybridSampler(search_space=distributions, seed=3, handoff=10, every=2)
    study = optuna.create_study(sampler=hybrid, direction="maximize")
    study.optimize(score, n_trials=36)
    trials = study.trials

    surrogate = SurrogateSampler(search_space=distributions, seed=3)
    tpe = optuna.samplers.TPESampler(seed=3, multivariate=True)
    encode = Space(distributions, "test")
    moved = 0
    for n in range(36):
        seen, running = _replay(trials[:n])
        if n < 10 or n % 2 == 0:
            assert surrogate.sample_relative(seen, running, distributions) == trials[n].params
            continue
        proposed = tpe.sample_relative(seen, running, distributions)
        taken = {encode.encode(t.params) for t in trials[:n]}
        if encode.encode(proposed) in taken:  # TPE repeated a network: the nearest untaken
            moved += 1
            changed = sum(proposed[k] != trials[n].params[k] for k in proposed)
            assert encode.encode(trials[n].params) not in taken and changed == 1
        else:
            assert proposed == trials[n].params
    assert moved < 13  # most TPE turns are TPE's own proposal, unchanged


@pytest.mark.parametrize(
    ("ops", "networks", "n_trials"),
    [(("conv3x3", "zero"), 25, 30), (("conv3x3", "skip", "zero"), 961, 60)],
)
def test_tpe_turns_never_repeat_a_network_while_untaken_ones_remain(ops, networks, n_trials):
    """TPE alone repeats networks it likes (it samples from densities); here it draws from a
    space where equivalent encodings abound, and every TPE turn still builds a new network."""
    blocks = {f"block_{i}": CategoricalDistribution(ops) for i in range(8)}
    distributions = {"width": CategoricalDistribution((8,))} | blocks
    sampler = HybridSampler(
        search_space=distributions, seed=1, handoff=4, canonical=space.canonical
    )

    def objective(trial: optuna.Trial) -> float:
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in distributions.items()}
        value = sum(op == "zero" for op in list(params.values())[1:5]) - 0.1 * trial.number
        return value + random.Random(trial.number).random()

    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=n_trials)
    canon = [str(sorted(space.canonical(t.params).items())) for t in study.trials]
    untaken = min(n_trials, networks)
    assert len(set(canon[:untaken])) == untaken


def test_a_single_choice_width_on_tpe_turns_and_two_threads():
    sampler = HybridSampler(search_space=space.distributions((8,)), seed=0, handoff=6)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: hits(space.sample(t, widths=(8,)).params()), n_trials=30, n_jobs=2)
    trials = study.trials
    assert all(t.params["width"] == 8 and len(t.params) == 9 for t in trials)
    # Two threads: a trial proposed while another runs cannot see that one's network yet, so
    # only trials that ran at the same time may coincide.
    for j, later in enumerate(trials):
        for earlier in trials[:j]:
            if earlier.params == later.params:
                assert earlier.datetime_complete > later.datetime_start, (earlier.number, j)


def test_a_parameter_outside_the_space_is_refused_on_a_tpe_turn_too():
    sampler = HybridSampler(search_space=space.distributions(), seed=0, handoff=0, every=1000)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: hits(space.sample(t).params()), n_trials=12)

    def objective(trial: optuna.Trial) -> float:
        space.sample(trial)
        return trial.suggest_float("lr", 0.01, 0.1)

    with pytest.raises(ValueError, match="'lr'.*only the categorical space it was given"):
        study.optimize(objective, n_trials=1)  # trial 12: TPE's turn (12 % 1000 != 0)
