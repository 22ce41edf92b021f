"""nanonas.samplers.surrogate: a Gaussian process over the categorical space picks each proposal."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from landscape import (
    BEST,
    check_concentrates_far_faster_than_random,
    check_multi_objective_finds_a_far_better_pareto_set_than_random,
    check_three_objectives_accuracy_params_and_flops,
    hits,
)

from nanonas import space
from nanonas.samplers import surrogate
from nanonas.samplers.history import Space
from nanonas.samplers.surrogate import SurrogateSampler


@pytest.mark.parametrize("seed", [0, 1])
def test_concentrates_far_faster_than_random(seed):
    check_concentrates_far_faster_than_random("surrogate", seed)


def test_multi_objective_finds_a_far_better_pareto_set_than_random():
    check_multi_objective_finds_a_far_better_pareto_set_than_random("surrogate")


def test_three_objectives_accuracy_params_and_flops():
    check_three_objectives_accuracy_params_and_flops("surrogate")


def test_the_gp_learns_which_choices_score_from_a_few_dozen_trials():
    # 40 random architectures of the landscape (hits: the number of best choices), then the GP's
    # mean on 300 others it has not seen must rank them as the truth does.
    encode = Space(space.distributions(), "test")
    rng = np.random.RandomState(0)
    sizes = encode.sizes

    def draw(n: int) -> np.ndarray:
        return np.stack([rng.randint(k, size=n) for k in sizes], axis=1)

    def truth(x: np.ndarray) -> np.ndarray:
        return np.array([hits(encode.params(tuple(int(c) for c in row))) for row in x], float)

    seen, unseen = draw(40), draw(300)
    gp = surrogate._GP.fit(seen, truth(seen))
    hamming = (unseen[:, None, :] != seen[None, :, :]).sum(axis=-1)
    mean = np.exp(-hamming / gp.length) @ gp.alpha
    rank = np.corrcoef(np.argsort(np.argsort(mean)), np.argsort(np.argsort(truth(unseen))))[0, 1]
    assert rank > 0.6, rank  # Spearman's rho; a GP that learned nothing scores about 0


def test_expected_improvement_prefers_a_promising_unseen_network_to_a_known_one():
    # Best architecture seen and a neighbour one change closer to BEST: the neighbour's EI is
    # the larger, and a network far from every good trial is lower than both.
    encode = Space(space.distributions(), "test")
    best = encode.encode(BEST)
    worst = tuple((c + 1) % k for c, k in zip(best, encode.sizes, strict=True))
    start = best[:3] + worst[3:]  # three of nine parameters at their best
    x = [start[:i] + worst[i:] if i < 3 else worst for i in range(4)] + [start]
    y = [hits(encode.params(a)) for a in x]
    gp = surrogate._GP.fit(np.array(x), np.array(y, float))
    closer = start[:3] + (best[3],) + start[4:]
    ei = gp.expected_improvement(np.array([closer, worst]))
    assert ei[0] > ei[1]


def test_a_long_study_fits_a_bounded_subset_best_and_recent():
    fitted = [((i,), float(i % 7)) for i in range(1000)]
    kept = surrogate._subset(fitted)
    assert len(kept) <= surrogate._MAX_FIT
    assert fitted[-1] in kept and all(p in kept for p in fitted if p[1] == 6.0)


def test_pruned_and_over_budget_trials_count_as_the_worst_completed_value():
    sampler = SurrogateSampler(search_space=space.distributions(), seed=0, n_startup=4)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for value, state in ((1.0, "COMPLETE"), (3.0, "COMPLETE"), (None, "PRUNED"), (None, "FAIL")):
        study.add_trial(
            optuna.trial.create_trial(
                state=getattr(optuna.trial.TrialState, state),
                params={n: d.choices[len(study.trials)] for n, d in space.distributions().items()},
                distributions=space.distributions(),
                value=value,
            )
        )
    history, _ = Space(space.distributions(), "test").scan(study.trials)
    targets = surrogate._targets(history, [-1.0], np.random.RandomState(0))
    values = {t.number: v for (t, _), v in targets}
    assert values == {0: 1.0, 1: 3.0, 2: 1.0}  # the FAIL (trial 3) is left out


@pytest.mark.parametrize("seed", range(3))
def test_after_the_startup_each_proposal_is_one_change_from_one_of_the_ten_best(seed):
    sampler = SurrogateSampler(search_space=space.distributions(), seed=seed)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: hits(space.sample(t).params()) + 0.01 * t.number, n_trials=30)
    for i, t in enumerate(study.trials[5:], start=5):
        earlier = sorted(study.trials[:i], key=lambda s: -s.value)[:10]
        changed = [sum(t.params[n] != s.params[n] for n in t.params) for s in earlier]
        assert min(changed) == 1, (i, changed)
