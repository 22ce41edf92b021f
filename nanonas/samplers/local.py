"""Local search over nanonas's categorical space (White et al. 2020, "Local search is state of
the art for neural architecture search benchmarks").

    sampler = LocalSearchSampler(search_space=space.distributions(), seed=0)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Like every nanonas sampler it keeps no state of its own: a proposal is a pure function of the
seed, the trial's number and the stored trials (nanonas.samplers.history).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import CategoricalDistribution

from nanonas import pareto
from nanonas.samplers.history import (
    Arch,
    Space,
    SpaceSampler,
    check_int,
    check_seed,
    rank_key,
)

__all__ = ["LocalSearchSampler"]


class LocalSearchSampler(SpaceSampler):
    """Local search from the best architecture found so far.

    The first `n_startup` proposals are uniformly random. Then the centre is the best finished
    trial (the ranking of nanonas.samplers.history; with several objectives, a non-dominated
    COMPLETE trial drawn uniformly) whose one-change neighbourhood still holds a network no
    trial has; the proposal is one of those neighbours, a parameter drawn uniformly and then
    another of its choices, as EvolutionSampler mutates. A better neighbour becomes the next
    centre as soon as it is observed (first improvement), and a centre whose neighbours are
    all taken is a local optimum: the next best trial takes over, so the search climbs on from
    the best of what it saw instead of restarting at random.

    `canonical` maps parameters to those of the network they build (nanonas.space.canonical
    for nanonas's space); proposals then avoid equivalent encodings of a taken network.
    """

    def __init__(
        self,
        *,
        search_space: dict[str, CategoricalDistribution],
        seed: int = 0,
        n_startup: int = 10,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._space = Space(search_space, "LocalSearchSampler", canonical)
        self._seed = check_seed(seed)
        self._n_startup = check_int("n_startup", n_startup, 1)

    def _propose(self, study, trial, trials, history, taken, rng):  # see SpaceSampler
        space = self._space
        if len(history) < self._n_startup:
            return space.random_untaken(taken, rng)
        for centre in self._centres(history, pareto.signs(study.directions), rng):
            child = space.neighbour(centre, taken, rng)
            if child is not None:
                return child
        best = self._centres(history, pareto.signs(study.directions), rng)[0]
        return space.untaken(best, taken, rng)  # every neighbourhood is spent

    @staticmethod
    def _centres(history, signs: list[float], rng: np.random.RandomState) -> list[Arch]:
        """Every finished architecture, best first (ties, and the Pareto set, in RNG order)."""
        keys = [rank_key(t, signs) for t, _ in history]
        if len(signs) > 1:  # COMPLETE trials: by Pareto non-domination rank
            complete = [i for i, k in enumerate(keys) if k[0] == 0]
            points = [
                [s * v for s, v in zip(signs, history[i][0].values, strict=True)] for i in complete
            ]
            for i, rank in zip(complete, pareto.ranks(points), strict=True):
                keys[i] = (0, float(rank))
        tie_breaks = rng.random_sample(len(history))
        order = sorted(range(len(history)), key=lambda i: (keys[i], tie_breaks[i]))
        return [history[i][1] for i in order]
