"""nanonas.pareto: dominance with one sign convention, every objective minimized."""

from __future__ import annotations

import itertools

import numpy as np
from optuna.study import StudyDirection

from nanonas import pareto

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


def test_minimized_turns_maximized_objectives():
    assert pareto.signs([MAX, MIN]) == [-1.0, 1.0]
    assert pareto.minimized([0.9, 2e5], [MAX, MIN]) == (-0.9, 2e5)


def test_dominates():
    assert pareto.dominates((1, 1), (1, 2)) and pareto.dominates((0, 1), (1, 2))
    assert not pareto.dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not pareto.dominates((0, 3), (1, 2)) and not pareto.dominates((1, 2), (0, 3))


def test_front_and_ranks_agree_with_pairwise_dominance():
    rng = np.random.default_rng(0)
    for _ in range(50):
        points = rng.integers(0, 5, (rng.integers(0, 12), rng.integers(1, 4))).tolist()
        ranks = pareto.ranks(points)
        expected_front = [
            i for i, p in enumerate(points) if not any(pareto.dominates(q, p) for q in points)
        ]
        assert pareto.front(points) == expected_front
        assert [i for i, r in enumerate(ranks) if r == 0] == expected_front
        for (i, p), (j, q) in itertools.product(enumerate(points), repeat=2):
            if pareto.dominates(p, q):
                assert ranks[i] < ranks[j]
        for i, r in enumerate(ranks):  # a point of rank r > 0 is dominated by one of rank r - 1
            if r > 0:
                assert any(
                    ranks[j] == r - 1 and pareto.dominates(points[j], points[i])
                    for j in range(len(points))
                )
    assert pareto.front([]) == [] and pareto.ranks([]) == []
