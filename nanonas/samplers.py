"""Optuna samplers that Optuna lacks for a categorical NAS space: CatCMA and aging evolution.

    sampler = CatCmaSampler(search_space=space.distributions(), seed=0)
    sampler = EvolutionSampler(search_space=space.distributions(), seed=0, population_size=20)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Optuna's CmaEsSampler hands categorical parameters to RandomSampler; `CatCmaSampler` really
searches them, with the `cmaes` package: CatCMA with margin (`CatCMAwM` given only a categorical
space, since `CatCMA` itself refuses fewer than two continuous dimensions) for one objective,
COMO-CatCMA with margin (`COMOCatCMAwM`) for several. `EvolutionSampler` is regularized (aging)
evolution (Real et al. 2019).

Both samplers keep no state of their own: every proposal is a pure function of the seed, the
trial's number and the finished trials in the storage, so a study resumed in a new process (or
shared by several workers over one database) proposes what it would have proposed anyway.

How a finished trial ranks, in both samplers (best first):
  1. COMPLETE and feasible, by its values (the study's directions; Pareto terms when several);
  2. PRUNED, below every COMPLETE trial (it was stopped for being worse than its peers), by its
     last reported accuracy (its last intermediate value, else user attr `val_acc[-1]`);
  3. COMPLETE but infeasible (a `trial.constraints` value > 0), by total violation;
  4. FAIL. A FAIL that Optuna's retry callback re-enqueued is left out: its retry will tell.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from cmaes import CatCMAwM, COMOCatCMAwM
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CatCmaSampler", "EvolutionSampler"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_RESAMPLES = 20  # draws from the same seeded RNG before accepting an already-taken architecture

_Arch = tuple[int, ...]  # one choice index per searched (multi-choice) parameter
_RankKey = tuple[int, float]  # (class 0-3 as in the module docstring, then lower is better)


class _SpaceSampler(optuna.samplers.BaseSampler):
    """What both samplers share: the space they know (and nothing else), and a proposal that is
    a pure function of the seed, the trial's number and the study's trials."""

    _space: _Space
    _seed: int

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if not self._space.sizes:  # every parameter has a single choice: nothing to search
            return self._space.params(())
        trials = study.get_trials(deepcopy=False)
        history, taken = self._space.scan(trials)
        rng = np.random.RandomState(_trial_seed(self._seed, trial.number))
        return self._space.params(self._propose(study, trial, trials, history, taken, rng))

    def _propose(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        trials: list[FrozenTrial],
        history: list[tuple[FrozenTrial, _Arch]],
        taken: set[_Arch],
        rng: np.random.RandomState,
    ) -> _Arch:
        raise NotImplementedError  # each sampler's own search

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        name = type(self).__name__
        raise _outside(name, self._space.distributions, param_name, param_distribution)


class CatCmaSampler(_SpaceSampler):
    """CatCMA over the categorical `search_space`; COMO-CatCMA when the study has 2+ objectives.

    Each proposal replays the study: a fresh optimizer is told the finished trials in
    trial-number order, in consecutive chunks of `population_size` (one generation per chunk;
    an incomplete last chunk waits, and so do trials still running). The new trial is drawn
    from the resulting distribution with an RNG seeded from (seed, trial number), up to 20
    times until no trial has that architecture yet (evaluated, running or waiting). States
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
    ) -> None:
        self._space = _Space(search_space, "CatCmaSampler")
        self._seed = _check_seed(seed)
        if population_size is not None:
            _check_int("population_size", population_size, 2)
        self._n_kernels = _check_int("n_kernels", n_kernels, 2)
        self._sizes = self._space.sizes
        # None: CatCMA's default 4 + 3 ln(dimensions), made explicit as the chunks depend on it.
        self._lambda = population_size or 4 + math.floor(3 * math.log(max(len(self._sizes), 1)))
        # Optimizer states after each chunk of the last replay; read-only once stored.
        self._snapshots: list[tuple[tuple[Any, ...], Any]] = []
        self._snapshots_for: int | None = None  # number of objectives they belong to
        self._lock = threading.Lock()  # study.optimize(n_jobs>1) asks from several threads

    def _propose(self, study, trial, trials, history, taken, rng):  # see _SpaceSampler
        signs = _signs(study)
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
        history: list[tuple[FrozenTrial, _Arch]],
        signs: list[float],
        taken: set[_Arch],
        rng: np.random.RandomState,
    ) -> _Arch:
        items = [(t.number, arch, _rank_key(t, signs)) for t, arch in history]
        optimizer = copy.deepcopy(self._replay(items, self._new_cma, self._tell_chunk, 1))
        optimizer.reseed_rng(int(rng.randint(2**31)))
        for _ in range(_RESAMPLES):
            arch = tuple(int(i) for i in optimizer.ask().c.argmax(axis=1))
            if arch not in taken:
                break
        return arch

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
        history: list[tuple[FrozenTrial, _Arch]],
        signs: list[float],
        taken: set[_Arch],
        rng: np.random.RandomState,
        pending: int,
    ) -> _Arch:
        items = []
        for t, arch in history:
            key = _rank_key(t, signs)
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
            if arch not in taken:
                return arch
        kernel = como.kernels[
            slot._kernel_id
            if slot is not None and slot._kernel_id is not None
            else como.current_kernel_id
        ]
        kernel.reseed_rng(int(rng.randint(2**31)))
        for _ in range(_RESAMPLES):
            arch = _arch_of(kernel.ask().c)
            if arch not in taken:
                break
        return arch

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


class EvolutionSampler(_SpaceSampler):
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
    ) -> None:
        self._space = _Space(search_space, "EvolutionSampler")
        self._seed = _check_seed(seed)
        self._population_size = _check_int("population_size", population_size, 2)
        if sample_size is None:  # the factory in nanonas.study passes population_size alone
            sample_size = min(5, population_size)
        _check_int("sample_size", sample_size, 1)
        if sample_size > population_size:
            raise ValueError(
                f"sample_size must be at most population_size ({population_size}), "
                f"got {sample_size!r}"
            )
        self._sample_size = sample_size
        self._sizes = self._space.sizes

    def _propose(self, study, trial, trials, history, taken, rng):  # see _SpaceSampler
        if len(history) < self._population_size:
            for _ in range(_RESAMPLES):
                arch = tuple(int(rng.randint(k)) for k in self._sizes)
                if arch not in taken:
                    break
            return arch
        population = history[-self._population_size :]
        picks = rng.choice(len(population), self._sample_size, replace=False)
        parent = self._best([population[i] for i in picks], _signs(study), rng)
        neighbours = [
            parent[:i] + (choice,) + parent[i + 1 :]
            for i, k in enumerate(self._sizes)
            for choice in range(k)
            if choice != parent[i]
        ]
        fresh = [a for a in neighbours if a not in taken] or neighbours
        return fresh[rng.randint(len(fresh))]

    @staticmethod
    def _best(
        sample: list[tuple[FrozenTrial, _Arch]], signs: list[float], rng: np.random.RandomState
    ) -> _Arch:
        keys = [_rank_key(t, signs) for t, _ in sample]
        if len(signs) > 1:  # COMPLETE members: Pareto non-domination rank within the sample
            complete = [i for i, k in enumerate(keys) if k[0] == 0]
            points = np.array(
                [[s * v for s, v in zip(signs, sample[i][0].values, strict=True)] for i in complete]
            )
            for i, rank in zip(complete, _pareto_ranks(points), strict=True):
                keys[i] = (0, float(rank))
        tie_breaks = rng.random_sample(len(sample))
        best = min(range(len(sample)), key=lambda i: (keys[i], tie_breaks[i]))
        return sample[best][1]


# --- what both samplers read from a study ---------------------------------------------------


class _Space:
    """The categorical space a sampler searches: Optuna parameters to choice indices and back.

    Parameters with a single choice are not searched (CatCMA needs two categories or more);
    they always take their only choice.
    """

    def __init__(self, space: Any, who: str) -> None:
        self.distributions = _check_space(space, who)
        self._choices = {n: d.choices for n, d in self.distributions.items()}
        self.searched = [n for n, c in self._choices.items() if len(c) > 1]
        self.sizes = [len(self._choices[n]) for n in self.searched]
        # Dict lookups, not to_internal_repr: a proposal encodes every trial of the study.
        self._index = [(n, {c: i for i, c in enumerate(self._choices[n])}) for n in self.searched]

    def encode(self, params: dict[str, Any] | None) -> _Arch | None:
        """The architecture of `params`, or None if they do not cover this space."""
        try:
            return tuple(index[params[n]] for n, index in self._index)
        except (KeyError, TypeError):
            return None

    def params(self, arch: _Arch) -> dict[str, Any]:
        chosen = dict(zip(self.searched, arch, strict=True))
        return {n: c[chosen.get(n, 0)] for n, c in self._choices.items()}

    def scan(
        self, trials: Sequence[FrozenTrial]
    ) -> tuple[list[tuple[FrozenTrial, _Arch]], set[_Arch]]:
        """The finished trials of this space in number order with their architectures, and
        every architecture that some trial has (evaluated, running, or waiting to run)."""
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
        history, taken = [], set()
        for t in sorted(trials, key=lambda t: t.number):
            if t.state == TrialState.WAITING:
                arch = self.encode(t.params or t.system_attrs.get("fixed_params"))
            else:
                arch = self.encode(t.params)
            if arch is None:
                continue
            taken.add(arch)
            # Choices are not compared with the trial's distributions: Optuna already refuses
            # a parameter whose categorical choices differ from the study's earlier trials'.
            if t.state in _FINISHED and not (t.state == TrialState.FAIL and t.number in retried):
                history.append((t, arch))  # a retried FAIL is left to its retry to tell
        return history, taken


def _rank_key(trial: FrozenTrial, signs: list[float]) -> _RankKey:
    """The module docstring's order as (class, lower-is-better value); COMPLETE is (0, value)."""
    if trial.state == TrialState.FAIL:
        return (3, 0.0)
    if trial.state == TrialState.PRUNED:
        return (1, _last_score(trial, signs[0]))
    violation = sum(max(0.0, float(c)) for c in trial.constraints.values())
    if violation > 0:
        return (2, violation)
    return (0, signs[0] * trial.values[0] if len(signs) == 1 else 0.0)


def _last_score(trial: FrozenTrial, sign: float) -> float:
    """A pruned trial's last reported accuracy, negated where higher is better."""
    if trial.intermediate_values:
        value = sign * trial.intermediate_values[max(trial.intermediate_values)]
    else:
        curve = trial.user_attrs.get("val_acc")
        value = -float(curve[-1]) if isinstance(curve, list) and curve else math.inf
    return value if math.isfinite(value) else math.inf


def _signs(study: optuna.Study) -> list[float]:
    """+1 per minimized objective, -1 per maximized one: CMA and Pareto terms minimize."""
    return [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]


def _pareto_ranks(points: np.ndarray) -> list[int]:
    """Non-domination rank (0 = Pareto front) of each row, all objectives minimized."""
    ranks = [-1] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        front = {
            i
            for i in left
            if not any(
                np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in left
            )
        }
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


# --- encoding, seeding, validation ----------------------------------------------------------


def _one_hot(arch: _Arch, sizes: list[int]) -> np.ndarray:
    c = np.zeros((len(sizes), max(sizes)), dtype=bool)
    c[np.arange(len(sizes)), arch] = True
    return c


def _arch_of(c: np.ndarray) -> _Arch:
    return tuple(int(i) for i in np.asarray(c).argmax(axis=1))


def _trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed of its own for every (seed, trial number)."""
    return int(np.random.SeedSequence([seed % 2**64, number]).generate_state(1)[0])


def _check_space(space: Any, who: str) -> dict[str, CategoricalDistribution]:
    if not isinstance(space, dict) or not space:
        raise ValueError(
            f"search_space must be a non-empty dict of parameter name -> "
            f"CategoricalDistribution, got {space!r}"
        )
    for name, dist in space.items():
        if not isinstance(dist, CategoricalDistribution):
            raise ValueError(
                f"search_space[{name!r}] is {dist!r}; {who} searches only categorical "
                f"parameters: every value must be a CategoricalDistribution"
            )
    return dict(space)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _outside(
    who: str, space: dict[str, CategoricalDistribution], name: str, dist: BaseDistribution
) -> ValueError:
    return ValueError(
        f"parameter {name!r} ({dist!r}) is outside the search space: {who} searches only the "
        f"categorical space it was given ({', '.join(space)}) and never samples at random"
    )


# --- COMO-CatCMA with ranks for unfinished work and UHVI for any number of objectives ------


@dataclasses.dataclass(frozen=True)
class _Told(COMOCatCMAwM.Solution):
    rank: _RankKey = (0, 0.0)  # see _rank_key; COMPLETE trials are then ranked by UHVI


class _Como(COMOCatCMAwM):
    """COMOCatCMAwM that ranks PRUNED/infeasible/FAIL trials below COMPLETE ones, computes
    UHVI in any dimension on range-scaled objectives, and remembers results by architecture."""

    _MAX_OBJECTIVES = 1_000  # our _UHVI is not limited to two objectives

    def __init__(self, *, n_objectives: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results: dict[_Arch, tuple[float, ...]] = {}  # architecture -> minimized values
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
