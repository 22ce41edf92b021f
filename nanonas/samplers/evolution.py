"""Regularized (aging) evolution over nanonas's categorical space (Real et al. 2019).

    sampler = EvolutionSampler(search_space=space.distributions(), seed=0, population_size=20)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Like every nanonas sampler it keeps no state of its own: a proposal is a pure function of the
seed, the trial's number and the stored trials (nanonas.samplers.history), so a resumed study
proposes what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from nanonas import pareto
from nanonas.samplers.history import (
    Arch,
    Space,
    SpaceSampler,
    check_int,
    check_seed,
    rank_key,
)

__all__ = ["EvolutionSampler"]


class EvolutionSampler(SpaceSampler):
    """Regularized (aging) evolution over the categorical `search_space` (Real et al. 2019).

    The population is the `population_size` most recent finished trials (by trial number), so
    the oldest member dies when a new one finishes. Until that many trials have finished,
    proposals are uniformly random. Then `sample_size` members (default 5, or the whole
    population if it is smaller) are drawn uniformly without replacement; the parent is the
    best of them (the module docstring's order; with several objectives, the lowest Pareto
    non-domination rank within the sample), ties broken by the seeded RNG; the child is the
    parent with exactly one parameter changed to another choice, drawn among those one-change
    neighbours that no trial has yet (if there are any).

    Every draw comes from an RNG seeded from (seed, trial number), so a resumed study proposes
    what it would have proposed without the restart.
    """

    def __init__(
        self,
        *,
        search_space: dict[str, CategoricalDistribution],
        seed: int = 0,
        population_size: int = 20,
        sample_size: int | None = None,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._space = Space(search_space, "EvolutionSampler", canonical)
        self._seed = check_seed(seed)
        self._population_size = check_int("population_size", population_size, 2)
        if sample_size is None:  # the registry (nanonas.samplers) passes population_size alone
            sample_size = min(5, population_size)
        check_int("sample_size", sample_size, 1)
        if sample_size > population_size:
            raise ValueError(
                f"sample_size must be at most population_size ({population_size}), "
                f"got {sample_size!r}"
            )
        self._sample_size = sample_size

    def _propose(self, study, trial, trials, history, taken, rng):  # see SpaceSampler
        space = self._space
        if len(history) < self._population_size:
            return space.random_untaken(taken, rng)
        population = history[-self._population_size :]
        picks = rng.choice(len(population), self._sample_size, replace=False)
        parent = self._best([population[i] for i in picks], pareto.signs(study.directions), rng)
        # Real et al.'s mutation, among the one-change neighbours whose network is untaken.
        child = space.neighbour(parent, taken, rng)
        if child is None:  # every one-change neighbour is taken: the nearest untaken one
            return space.untaken(parent, taken, rng)
        return child

    @staticmethod
    def _best(
        sample: list[tuple[FrozenTrial, Arch]], signs: list[float], rng: np.random.RandomState
    ) -> Arch:
        keys = [rank_key(t, signs) for t, _ in sample]
        if len(signs) > 1:  # COMPLETE members: Pareto non-domination rank within the sample
            complete = [i for i, k in enumerate(keys) if k[0] == 0]
            points = np.array(
                [[s * v for s, v in zip(signs, sample[i][0].values, strict=True)] for i in complete]
            )
            for i, rank in zip(complete, pareto.ranks(points), strict=True):
                keys[i] = (0, float(rank))
        tie_breaks = rng.random_sample(len(sample))
        best = min(range(len(sample)), key=lambda i: (keys[i], tie_breaks[i]))
        return sample[best][1]
