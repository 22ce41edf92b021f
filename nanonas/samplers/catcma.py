"""CatCMA over nanonas's categorical space, with the `cmaes` package; COMO-CatCMA for Pareto
searches.

    sampler = CatCmaSampler(search_space=space.distributions(), seed=0)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Optuna's CmaEsSampler hands categorical parameters to RandomSampler; `CatCmaSampler` really
searches them: CatCMA with margin (`CatCMAwM` given only a categorical space, since `CatCMA`
itself refuses fewer than two continuous dimensions) for one objective, COMO-CatCMA with margin
(`COMOCatCMAwM`) for several. Like every nanonas sampler it keeps no state of its own that a
restart would lose (nanonas.samplers.history): its cache only saves replaying the study.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from cmaes import CatCMAwM, COMOCatCMAwM
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nanonas import pareto
from nanonas.samplers.history import (
    Arch,
    RankKey,
    Space,
    SpaceSampler,
    check_int,
    check_seed,
    rank_key,
)

__all__ = ["CatCmaSampler"]


class CatCmaSampler(SpaceSampler):
    """CatCMA over the categorical `search_space`; COMO-CatCMA when the study has 2+ objectives.

    Each proposal replays the study: a fresh optimizer is told the finished trials in
    trial-number order, in consecutive chunks of `population_size` (one generation per chunk;
    an incomplete last chunk waits, and so do trials still running). The new trial is drawn
    from the resulting distribution with an RNG seeded from (seed, trial number), up to 20
    times until no trial has that network yet (evaluated, running or waiting; compared by
    `canonical`, as in EvolutionSampler), else the nearest untaken architecture. States
    are cached at chunk boundaries, so a proposal costs one generation's update, not a replay;
    a trial that finishes late shifts the chunks after it, and those are replayed.

    CatCMA is rank-based, so a generation is told ranks, not values: the order of the module
    docstring, ties kept in trial-number order. With several objectives, COMO-CatCMA runs
    `n_kernels` CatCMA kernels, each told by uncrowded hypervolume improvement (UHVI) against
    the other kernels' incumbents. UHVI is computed here, for any number of objectives (the
    packaged one is 2-D) and on objectives scaled to their observed range, so that the
    distance term of a dominated trial does not compare accuracy with raw parameter counts;
    PRUNED, infeasible and FAIL trials rank below every COMPLETE one as above. Trial i fills
    the i-th slot of COMO's ask queue, exact when trials run one after another (with several
    workers a trial may fill a neighbouring slot; its own parameters are still what is told).
    An incumbent re-evaluation whose architecture already has a result is answered from that
    result instead of spending a trial. Two kernels by default: with 100-400 trials of a
    9-parameter accuracy-vs-size problem (6 seeds) they gave a larger hypervolume than 3, 5
    or 10 (the package's default), each of which spends more trials per kernel update round.
    """

    def __init__(
        self,
        *,
        search_space: dict[str, CategoricalDistribution],
        seed: int = 0,
        population_size: int | None = None,
        n_kernels: int = 2,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._space = Space(search_space, "CatCmaSampler", canonical)
        self._seed = check_seed(seed)
        if population_size is not None:
            check_int("population_size", population_size, 2)
        self._n_kernels = check_int("n_kernels", n_kernels, 2)
        self._sizes = self._space.sizes
        # None: CatCMA's default 4 + 3 ln(dimensions), made explicit as the chunks depend on it.
        self._lambda = population_size or 4 + math.floor(3 * math.log(max(len(self._sizes), 1)))
        # Optimizer states after each chunk of the last replay; read-only once stored.
        self._snapshots: list[tuple[tuple[Any, ...], Any]] = []
        self._snapshots_for: int | None = None  # number of objectives they belong to
        self._lock = threading.Lock()  # study.optimize(n_jobs>1) asks from several threads

    def _propose(self, study, trial, trials, history, taken, rng):  # see SpaceSampler
        signs = pareto.signs(study.directions)
        with self._lock:
            if len(signs) == 1:
                return self._ask_single(history, signs, taken, rng)
            pending = sum(
                t.number < trial.number and t.state in (TrialState.RUNNING, TrialState.WAITING)
                for t in trials
            )
            return self._ask_multi(history, signs, taken, rng, pending)

    # --- one objective: CatCMA ------------------------------------------------------------

    def _new_cma(self) -> CatCMAwM:
        # Its RNG seed does not matter: tell() draws nothing and ask() follows a reseed.
        return CatCMAwM(c_space=self._sizes, population_size=self._lambda, seed=0)

    def _ask_single(
        self,
        history: list[tuple[FrozenTrial, Arch]],
        signs: list[float],
        taken: set[Arch],
        rng: np.random.RandomState,
    ) -> Arch:
        items = [(t.number, arch, rank_key(t, signs)) for t, arch in history]
        optimizer = copy.deepcopy(self._replay(items, self._new_cma, self._tell_chunk, 1))
        optimizer.reseed_rng(int(rng.randint(2**31)))
        return self._space.draw_untaken(
            lambda: tuple(int(i) for i in optimizer.ask().c.argmax(axis=1)), taken, rng
        )

    def _tell_chunk(self, optimizer: CatCMAwM, chunk: tuple[Any, ...]) -> None:
        order = sorted(range(len(chunk)), key=lambda i: chunk[i][2])  # stable: number order
        optimizer.tell(
            [
                (CatCMAwM.Solution(c=_one_hot(chunk[i][1], self._sizes)), float(rank))
                for rank, i in enumerate(order)
            ]
        )

    # --- several objectives: COMO-CatCMA ---------------------------------------------------

    def _new_como(self, n: int) -> _Como:
        kernels = [
            CatCMAwM(c_space=self._sizes, population_size=self._lambda)
            for _ in range(self._n_kernels)
        ]
        return _Como(c_space=self._sizes, kernels=kernels, seed=self._seed % 2**32, n_objectives=n)

    def _ask_multi(
        self,
        history: list[tuple[FrozenTrial, Arch]],
        signs: list[float],
        taken: set[Arch],
        rng: np.random.RandomState,
        pending: int,
    ) -> Arch:
        items = []
        for t, arch in history:
            key = rank_key(t, signs)
            values = [s * v for s, v in zip(signs, t.values, strict=True)] if key[0] == 0 else None
            items.append((t.number, arch, key, None if values is None else tuple(values)))
        # COMO is told every trial; the cache keeps its state every population_size trials.
        full = len(items) - len(items) % self._lambda
        new = functools.partial(self._new_como, len(signs))
        como = copy.deepcopy(self._replay(items[:full], new, self._feed, len(signs)))
        self._feed(como, tuple(items[full:]))
        como.answer_known_incumbents()
        slot = None
        for _ in range(pending + 1):  # slots ahead are held by trials still running
            slot = como.ask() if como.ask_queue_size else None
        if slot is not None and slot._incumbent_id is not None:
            arch = _arch_of(slot.c)
            if self._space.canon(arch) not in taken:
                return arch
        kernel = como.kernels[
            slot._kernel_id
            if slot is not None and slot._kernel_id is not None
            else como.current_kernel_id
        ]
        kernel.reseed_rng(int(rng.randint(2**31)))
        return self._space.draw_untaken(lambda: _arch_of(kernel.ask().c), taken, rng)

    def _feed(self, como: _Como, chunk: tuple[Any, ...]) -> None:
        for _, arch, key, values in chunk:
            como.answer_known_incumbents()
            slot = como.ask()
            c = _one_hot(arch, self._sizes)
            told = _Told(
                c=c, _kernel_id=slot._kernel_id, _incumbent_id=slot._incumbent_id, rank=key
            )
            como.tell((told, values or como.worst))
            como.results[arch] = values or como.worst

    # --- the replay cache ------------------------------------------------------------------

    def _replay(self, items: list[Any], new: Any, tell: Any, n_objectives: int) -> Any:
        """`new()` told `items` chunk by chunk (an incomplete last chunk is left out), resumed
        from the state cached after the longest unchanged prefix of chunks."""
        if self._snapshots_for != n_objectives:
            self._snapshots, self._snapshots_for = [], n_objectives
        size = self._lambda
        chunks = [tuple(items[i : i + size]) for i in range(0, len(items) - size + 1, size)]
        state = None
        for g, chunk in enumerate(chunks):
            if g < len(self._snapshots) and self._snapshots[g][0] == chunk:
                state = self._snapshots[g][1]
                continue
            del self._snapshots[g:]  # a trial that finished late reshuffled the chunks from here
            state = new() if state is None else copy.deepcopy(state)
            tell(state, chunk)
            self._snapshots.append((chunk, state))
        return new() if state is None else state


# --- encoding ---------------------------------------------------------------------------------


def _one_hot(arch: Arch, sizes: list[int]) -> np.ndarray:
    c = np.zeros((len(sizes), max(sizes)), dtype=bool)
    c[np.arange(len(sizes)), arch] = True
    return c


def _arch_of(c: np.ndarray) -> Arch:
    return tuple(int(i) for i in np.asarray(c).argmax(axis=1))


# --- COMO-CatCMA with ranks for unfinished work and UHVI for any number of objectives ------


@dataclasses.dataclass(frozen=True)
class _Told(COMOCatCMAwM.Solution):
    rank: RankKey = (0, 0.0)  # see rank_key; COMPLETE trials are then ranked by UHVI


class _Como(COMOCatCMAwM):
    """COMOCatCMAwM that ranks PRUNED/infeasible/FAIL trials below COMPLETE ones, computes
    UHVI in any dimension on range-scaled objectives, and remembers results by architecture.

    cmaes's public API falls short of this: COMOCatCMAwM offers no hook for unranked
    solutions, its UHVI is 2-D only, and its ask queue cannot be peeked. So this subclass
    overrides and reads private members (_kernel_tell, _UHVI, _update_ideal_nadir,
    _ask_queue, _tell_lists, ...), written against cmaes 0.13.1: pyproject.toml pins exactly
    that version (its comment says why this, and not a rewrite) and
    tests/samplers/test_catcma.py fails loudly, naming the member, if those members change.
    """

    _MAX_OBJECTIVES = 1_000  # our _UHVI is not limited to two objectives

    def __init__(self, *, n_objectives: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results: dict[Arch, tuple[float, ...]] = {}  # architecture -> minimized values
        self.worst = (math.inf,) * n_objectives  # stands in for values a trial does not have

    def __deepcopy__(self, memo: dict[int, Any]) -> _Como:
        # Results hold immutable tuples: copying them one by one made a replay 10x slower.
        other = object.__new__(type(self))
        for name, value in self.__dict__.items():
            other.__dict__[name] = dict(value) if name == "results" else copy.deepcopy(value, memo)
        return other

    def answer_known_incumbents(self) -> None:
        """Tell incumbent re-evaluations whose architecture already has a result."""
        while self.ask_queue_size:
            head = self._ask_queue[0]
            arch = _arch_of(head.c) if head._incumbent_id is not None else None
            if arch not in self.results:
                return
            self.tell((self.ask(), self.results[arch]))

    def _update_ideal_nadir(self, obj: np.ndarray) -> None:
        if np.all(np.isfinite(obj)):  # stand-ins for missing values must not move the box
            super()._update_ideal_nadir(obj)

    def _kernel_tell(self, kernel_id: int) -> None:
        told = self._tell_lists[kernel_id]
        keys = [
            (0, -self._UHVI(np.asarray(values, float), kernel_id)) if sol.rank[0] == 0 else sol.rank
            for sol, values in told
        ]
        order = sorted(range(len(told)), key=keys.__getitem__)
        self._kernels[kernel_id].tell(
            [(CatCMAwM.Solution(c=told[i][0].c), float(rank)) for rank, i in enumerate(order)]
        )
        told.clear()

    def _UHVI(self, objective: np.ndarray, kernel_id_to_omit: int) -> float:  # noqa: N802
        if self._ideal_point is None or self._incumbents_obj is None:
            return 0.0
        ref = self._get_reference_point()
        scale = np.maximum(ref - self._ideal_point, 1e-12)
        front = np.delete(self._incumbents_obj, kernel_id_to_omit, axis=0)
        front = front[np.all(np.isfinite(front), axis=1)]
        return _uhvi(objective / scale, front / scale, ref / scale)


def _uhvi(point: np.ndarray, front: np.ndarray, ref: np.ndarray) -> float:
    """Uncrowded hypervolume improvement of `point` over `front` (all minimized) within `ref`:
    the hypervolume it adds if it is non-dominated and inside the box, else minus its distance
    to the region that is (as cmaes's 2-D `UHVIArchive2D`, in any dimension)."""
    if any(np.array_equal(point, f) for f in front):
        return 0.0
    # The region that `front` does not dominate, inside the box, is a union of boxes below
    # these local upper bounds (Klamroth et al. 2015): split every bound that a point is under.
    bounds = [ref]
    for f in front:
        split = [b for b in bounds if np.all(f < b)]
        bounds = [b for b in bounds if not np.all(f < b)]
        for b in split:
            for j in range(len(ref)):
                u = b.copy()
                u[j] = f[j]
                bounds.append(u)
        bounds = [
            b
            for i, b in enumerate(bounds)
            if not any(
                np.all(b <= o) and (np.any(b < o) or k < i) for k, o in enumerate(bounds) if k != i
            )
        ]
    distance = min(float(np.linalg.norm(np.maximum(0.0, point - b))) for b in bounds)
    if distance > 0:
        return -distance
    return _box(point, ref) - _hypervolume(np.maximum(front, point), ref)


def _box(low: np.ndarray, high: np.ndarray) -> float:
    return float(np.prod(np.maximum(0.0, high - low)))


def _hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by `points` inside `ref`: slices along the last objective."""
    points = points[np.all(points < ref, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    points = points[np.argsort(points[:, -1])]
    tops = np.append(points[1:, -1], ref[-1])
    return sum(
        float(top - p[-1]) * _hypervolume(points[: i + 1, :-1], ref[:-1])
        for i, (p, top) in enumerate(zip(points, tops, strict=True))
    )
