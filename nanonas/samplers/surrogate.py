"""Surrogate-assisted search: a Gaussian process over the categorical space picks each proposal.

    sampler = SurrogateSampler(search_space=space.distributions(), seed=0)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Like every nanonas sampler it keeps no state of its own: a proposal is a pure function of the
seed, the trial's number and the stored trials (nanonas.samplers.history).

Why a Gaussian process with a Hamming kernel (as in COMBO and CoCaBO): two networks that share
most of their ops perform alike, and how much alike is learned from the trials by the kernel's
length scale. With at most a few hundred trials per fit, the exact GP costs milliseconds, and
unlike TPE it models how choices interact. The candidates are the one-change neighbours of the
10 best trials, as in BANANAS's mutation-based search: on NAS-Bench-201 (tuning seeds 100-119)
adding 1,000 uniformly drawn candidates raised the mean regret at 100 trials on all three
datasets (benchmarks/results/samplers-nb201.md).
Expected improvement, not the GP's mean, picks among them, so the search leaves a centre whose
neighbours the model rates poorly, however good the centre looked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nanonas import pareto
from nanonas.samplers.history import Arch, Space, SpaceSampler, check_int, check_seed, rank_key

__all__ = ["SurrogateSampler"]

_LENGTHS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # in changed parameters; fitted per proposal
_NOISES = (0.01, 0.05, 0.2, 0.5)  # observation noise variance of the standardized values
_TOP = 10  # the best trials whose one-change neighbours are the candidates
_MAX_FIT = 250  # trials a fit uses at most (the best half, the most recent half): 0.1 s a fit


class SurrogateSampler(SpaceSampler):
    """Gaussian-process search over the categorical `search_space` with expected improvement.

    The first `n_startup` proposals are uniformly random. Then a GP with the kernel
    exp(-(changed parameters) / length) is fitted to the finished trials (its length scale and
    noise chosen by marginal likelihood on a small grid), and the proposal is the untaken
    one-change neighbour of one of the 10 best trials with the largest expected improvement
    over the best fitted mean (the nearest untaken network once all of them are taken). A trial that
    did not complete within budget (pruned, over budget) counts as the worst completed value;
    a FAIL is left out of the fit, but its network stays taken.

    With several objectives it is ParEGO (Knowles 2006): each proposal draws a weight vector
    from the seeded RNG and models the augmented Chebyshev scalarization of the normalized
    objectives, so successive proposals aim at different parts of the Pareto front.

    `canonical` maps parameters to those of the network they build (nanonas.space.canonical
    for nanonas's space): equivalent encodings are one point of the GP and one taken network.
    """

    def __init__(
        self,
        *,
        search_space: dict[str, CategoricalDistribution],
        seed: int = 0,
        n_startup: int = 5,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._space = Space(search_space, "SurrogateSampler", canonical)
        self._seed = check_seed(seed)
        self._n_startup = check_int("n_startup", n_startup, 2)

    def _propose(self, study, trial, trials, history, taken, rng):  # see SpaceSampler
        space = self._space
        if len(history) < self._n_startup:
            return space.random_untaken(taken, rng)
        signs = pareto.signs(study.directions)
        fitted = [(space.canon(arch), y) for (_, arch), y in _targets(history, signs, rng)]
        if len(fitted) < 2:
            return space.random_untaken(taken, rng)
        fitted = _subset(fitted)
        x = np.array([a for a, _ in fitted])
        y = np.array([v for _, v in fitted])
        ranked = list(dict.fromkeys(a for a, _ in sorted(fitted, key=lambda p: -p[1])))
        pool = self._candidates(ranked[:_TOP], taken)
        if not pool:  # every one-change neighbour of the best trials is taken
            return space.untaken(ranked[0], taken, rng)
        gp = _GP.fit(x, y)
        ei = gp.expected_improvement(np.array([canon for _, canon in pool]))
        best = np.flatnonzero(ei >= ei.max() - 1e-12)
        return pool[int(best[rng.randint(len(best))])][0]

    def _candidates(self, top: list[Arch], taken: set[Arch]) -> list[tuple[Arch, Arch]]:
        """The untaken one-change neighbours of `top`, each network once, with its canonical
        form."""
        space, seen, pool = self._space, set(taken), []
        for centre in top:
            for i, k in enumerate(space.sizes):
                for c in range(k):
                    if c == centre[i]:  # the centre itself, not a neighbour
                        continue
                    arch = centre[:i] + (c,) + centre[i + 1 :]
                    canon = space.canon(arch, remember=False)
                    if canon not in seen:
                        seen.add(canon)
                        pool.append((arch, canon))
        return pool


def _targets(history, signs: list[float], rng: np.random.RandomState):
    """(trial, architecture) with the value the GP fits, higher better; FAIL trials left out."""
    complete = [(t, a) for t, a in history if rank_key(t, signs)[0] == 0]
    if not complete:
        return []
    if len(signs) == 1:
        values = [-signs[0] * t.values[0] for t, _ in complete]
    else:  # ParEGO: a new weight vector per proposal, from the proposal's RNG
        f = np.array([[s * v for s, v in zip(signs, t.values, strict=True)] for t, _ in complete])
        low, span = f.min(axis=0), np.ptp(f, axis=0)
        f = (f - low) / np.where(span > 0, span, 1.0)
        weights = rng.dirichlet(np.ones(len(signs)))
        values = list(-((f * weights).max(axis=1) + 0.05 * (f * weights).sum(axis=1)))
    worst = min(values)
    out = list(zip(complete, values, strict=True))
    for t, a in history:  # pruned and over budget: no better than any completed trial
        if t.state != TrialState.FAIL and rank_key(t, signs)[0] != 0:
            out.append(((t, a), worst))
    return out


def _subset(fitted: list[tuple[Arch, float]]) -> list[tuple[Arch, float]]:
    """At most _MAX_FIT points, so that a fit's cost stays bounded in a long study: the best
    half and the most recent half (a network fitted twice is fine for a GP)."""
    if len(fitted) <= _MAX_FIT:
        return fitted
    half = _MAX_FIT // 2
    best = sorted(range(len(fitted)), key=lambda i: -fitted[i][1])[:half]
    keep = sorted(set(best) | set(range(len(fitted) - half, len(fitted))))
    return [fitted[i] for i in keep]


class _GP:
    """An exact GP on standardized values, kernel exp(-hamming / length) + noise."""

    def __init__(self, x, alpha, chol, length, fitted):
        self.x, self.alpha, self.chol, self.length = x, alpha, chol, length
        self.fitted = fitted  # the GP's mean at the trials: noise-free, so not a lucky draw
        self.best = float(fitted.max())

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> _GP:
        mean, scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - mean) / scale
        hamming = (x[:, None, :] != x[None, :, :]).sum(axis=-1)
        best_fit = None
        for length in _LENGTHS:
            k = np.exp(-hamming / length)
            for noise in _NOISES:
                chol = scipy.linalg.cholesky(k + noise * np.eye(len(z)), lower=True)
                alpha = scipy.linalg.cho_solve((chol, True), z)
                # log marginal likelihood, up to a constant
                ll = -0.5 * z @ alpha - np.log(np.diag(chol)).sum()
                if best_fit is None or ll > best_fit[0]:
                    best_fit = (ll, length, chol, alpha, k)
        _, length, chol, alpha, k = best_fit
        return cls(x, alpha, chol, length, k @ alpha)

    def expected_improvement(self, candidates: np.ndarray) -> np.ndarray:
        hamming = (candidates[:, None, :] != self.x[None, :, :]).sum(axis=-1)
        k = np.exp(-hamming / self.length)
        mu = k @ self.alpha
        v = scipy.linalg.solve_triangular(self.chol, k.T, lower=True)
        sd = np.sqrt(np.maximum(1.0 - (v * v).sum(axis=0), 1e-12))
        gap = (mu - self.best) / sd
        return sd * (gap * scipy.special.ndtr(gap) + np.exp(-0.5 * gap * gap) / np.sqrt(2 * np.pi))
