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
    """Local search from the best architecture found so far, guided by what the best trials share.

    The first `n_startup` proposals are uniformly random. Then the centre is the best finished
    trial (the ranking of nanonas.samplers.history; with several objectives, a non-dominated
    COMPLETE trial drawn uniformly) whose one-change neighbourhood still holds a network no
    trial has; the proposal is one of those neighbours. A better neighbour becomes the next
    centre as soon as it is observed (first improvement), and a centre whose neighbours are
    all taken is a local optimum: the next best trial takes over, so the search climbs on from
    the best of what it saw instead of restarting at random.

    Optionally guided (off by default): the guide is TPE's density ratio, per parameter: l(c)
    and g(c), the smoothed frequencies of choice c among the best `gamma` share of the finished
    trials and among the rest. Real et al.'s mutation weight of a neighbour is multiplied by
    (l/g of the new value / l/g of the old) ** guide, so moves towards what good trials share
    come first; with probability `explore` the proposal is instead a whole architecture drawn,
    parameter by parameter, in proportion to (l/g) ** guide. It applies to single-objective
    studies only. Tuned on NAS-Bench-201 seeds 100-129 (guide 3, explore 0.1, 5 startup
    trials), it did not hold up on the reported seeds 0-29: far better on CIFAR-100, worse on
    ImageNet16-120 (benchmarks/results/samplers-nb201.md), so the default stays unguided.

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
        guide: float = 0.0,
        gamma: float = 0.25,
        explore: float = 0.0,
    ) -> None:
        self._space = Space(search_space, "LocalSearchSampler", canonical)
        self._seed = check_seed(seed)
        self._n_startup = check_int("n_startup", n_startup, 1)
        self._guide = _check_fraction("guide", guide, high=None)
        self._gamma = _check_fraction("gamma", gamma, low_open=True)
        self._explore = _check_fraction("explore", explore)

    def _propose(self, study, trial, trials, history, taken, rng):  # see SpaceSampler
        space = self._space
        if len(history) < self._n_startup:
            return space.random_untaken(taken, rng)
        centres = self._centres(history, pareto.signs(study.directions), rng)
        # Unguided with several objectives, or guide 0 (the RNG stream then is plain local
        # search's, draw for draw): see the class docstring.
        guided = self._guide > 0 and len(study.directions) == 1
        prefer = self._preference(centres) if guided else None
        if prefer is not None and self._explore > 0 and rng.random_sample() < self._explore:
            p = [w / w.sum() for w in prefer]
            return space.draw_untaken(
                lambda: tuple(int(rng.choice(len(q), p=q)) for q in p), taken, rng
            )
        for centre in centres:
            child = space.neighbour(centre, taken, rng, prefer=prefer)
            if child is not None:
                return child
        return space.untaken(centres[0], taken, rng)  # every neighbourhood is spent

    def _preference(self, ranked: list[Arch]) -> list[np.ndarray]:
        """Per parameter, a weight per choice: (l/g) ** guide, where l and g count the choice
        among the best `gamma` share of `ranked` (best first) and among the rest, each count
        starting at 1 so that an unseen choice keeps a chance."""
        n_good = max(1, int(np.ceil(self._gamma * len(ranked))))
        arr = np.asarray(ranked)
        weights = []
        for i, k in enumerate(self._space.sizes):
            good = np.bincount(arr[:n_good, i], minlength=k) + 1.0
            bad = np.bincount(arr[n_good:, i], minlength=k) + 1.0
            weights.append(((good / good.sum()) / (bad / bad.sum())) ** self._guide)
        return weights

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


def _check_fraction(
    name: str, value: Any, *, high: float | None = 1.0, low_open: bool = False
) -> float:
    """A number in [0, high] ((0, high] with low_open; no upper bound with high=None)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (value > 0 if low_open else value >= 0) and (high is None or value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}0, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)
