"""Pareto dominance, with one sign convention: every objective minimized.

A study mixes directions (maximize accuracy, minimize parameters). Turn a trial's values into
minimized form once, with `minimized`, and compare only minimized points here; nanonas has no
other dominance code (the summary's Pareto set and the samplers' ranks both come from here).

    points = [minimized(t.values, study.directions) for t in trials]
    front([(-0.9, 2e5), (-0.8, 1e5), (-0.7, 3e5)])   # -> [0, 1]; the third is dominated
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.study import StudyDirection

__all__ = ["dominates", "front", "minimized", "ranks", "signs"]


def signs(directions: Sequence[StudyDirection]) -> list[float]:
    """+1 per minimized objective, -1 per maximized one: multiply a value by its sign to
    minimize it."""
    return [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]


def minimized(values: Sequence[float], directions: Sequence[StudyDirection]) -> tuple[float, ...]:
    """`values` turned so that smaller is better in every objective."""
    return tuple(s * float(v) for s, v in zip(signs(directions), values, strict=True))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether minimized point `a` is no worse than `b` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-domination rank of each minimized point: 0 for the Pareto front, 1 for the front of
    the rest, and so on. Equal points share a rank."""
    if not len(points):
        return []
    array = np.asarray(points, dtype=float).reshape(len(points), -1)
    result = [-1] * len(array)
    left, rank = list(range(len(array))), 0
    while left:
        dominated = _dominated(array[left])
        for i, is_dominated in zip(left, dominated, strict=True):
            if not is_dominated:
                result[i] = rank
        left = [i for i, is_dominated in zip(left, dominated, strict=True) if is_dominated]
        rank += 1
    return result


def front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the minimized points that no other point dominates, in input order."""
    if not len(points):
        return []
    dominated = _dominated(np.asarray(points, dtype=float).reshape(len(points), -1))
    return [i for i, is_dominated in enumerate(dominated) if not is_dominated]


def _dominated(rows: np.ndarray) -> np.ndarray:
    """For each row, whether another row dominates it (one row at a time: memory stays linear
    in the number of points, which reach the tens of thousands in a long study)."""
    return np.array(
        [bool(np.any(np.all(rows <= r, axis=1) & np.any(rows < r, axis=1))) for r in rows],
        dtype=bool,
    )
