"""What nanonas's samplers share: the space they search, the study's history, and its ranking.

`SpaceSampler` is the base of CatCmaSampler, EvolutionSampler and LocalSearchSampler. It knows
one categorical space and nothing else, and every proposal is a pure function of the seed, the
trial's number and the finished trials in the storage, so a study resumed in a new process (or
shared by several workers over one database) proposes what it would have proposed anyway.

How a finished trial ranks, in every nanonas sampler (best first):
  1. COMPLETE and feasible, by its values (the study's directions; Pareto terms when several);
  2. PRUNED, below every COMPLETE trial (it was stopped for being worse than its peers), by its
     last reported accuracy (its last intermediate value, else its recorded curve's last);
  3. COMPLETE but infeasible (a `trial.constraints` value > 0), by total violation;
  4. FAIL. A FAIL that Optuna's retry callback re-enqueued is left out: its retry will tell.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nanonas import records

__all__ = [
    "RESAMPLES",
    "Arch",
    "RankKey",
    "Space",
    "SpaceSampler",
    "check_int",
    "check_seed",
    "rank_key",
    "trial_rng",
]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RESAMPLES = 20  # draws from the same seeded RNG before looking for the nearest untaken one
# Enough untaken architectures at one distance to pick from uniformly; the search stops there.
_NEAREST_CAP = 5_000

Arch = tuple[int, ...]  # one choice index per searched (multi-choice) parameter
RankKey = tuple[int, float]  # (class 0-3 as in the module docstring, then lower is better)


class SpaceSampler(optuna.samplers.BaseSampler):
    """What every nanonas sampler shares: the space it knows (and nothing else), and a proposal
    that is a pure function of the seed, the trial's number and the study's trials."""

    _space: Space
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
        rng = trial_rng(self._seed, trial.number)
        return self._space.params(self._propose(study, trial, trials, history, taken, rng))

    def _propose(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        trials: list[FrozenTrial],
        history: list[tuple[FrozenTrial, Arch]],
        taken: set[Arch],
        rng: np.random.RandomState,
    ) -> Arch:
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


class Space:
    """The categorical space a sampler searches: Optuna parameters to choice indices and back.

    Parameters with a single choice are not searched (CatCMA needs two categories or more);
    they always take their only choice.

    `canonical` maps parameters to those of the network they build (nanonas.space.canonical):
    architectures with one canonical form are one network, so "taken" means its form is.
    """

    def __init__(
        self,
        space: Any,
        who: str,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if canonical is not None and not callable(canonical):
            raise ValueError(f"canonical must be a function of the parameters, got {canonical!r}")
        self._canonical = canonical
        self._canon_cache: dict[Arch, Arch] = {}  # scan() canonicalizes every trial per proposal
        self.distributions = _check_space(space, who)
        self._choices = {n: d.choices for n, d in self.distributions.items()}
        self.searched = [n for n, c in self._choices.items() if len(c) > 1]
        self.sizes = [len(self._choices[n]) for n in self.searched]
        # Dict lookups, not to_internal_repr: a proposal encodes every trial of the study.
        self._index = [(n, {c: i for i, c in enumerate(self._choices[n])}) for n in self.searched]

    def encode(self, params: dict[str, Any] | None) -> Arch | None:
        """The architecture of `params`, or None if they do not cover this space."""
        try:
            return tuple(index[params[n]] for n, index in self._index)
        except (KeyError, TypeError):
            return None

    def params(self, arch: Arch) -> dict[str, Any]:
        chosen = dict(zip(self.searched, arch, strict=True))
        return {n: c[chosen.get(n, 0)] for n, c in self._choices.items()}

    def canon(self, arch: Arch, *, remember: bool = True) -> Arch:
        """The architecture of the network `arch` builds (itself without `canonical`). Trials'
        forms are remembered; a sampler's passing candidates (`remember=False`) are not, or
        the cache would grow by a thousand entries a proposal."""
        if self._canonical is None:
            return arch
        found = self._canon_cache.get(arch)
        if found is None:
            found = self.encode(self._canonical(self.params(arch)))
            if found is None:
                raise ValueError(f"canonical() left the space: {self.params(arch)!r}")
            if remember:
                self._canon_cache[arch] = found
        return found

    def draw_untaken(
        self, draw: Callable[[], Arch], taken: set[Arch], rng: np.random.RandomState
    ) -> Arch:
        """`draw()` again until its network is untaken (RESAMPLES tries), then the last draw
        or the untaken one nearest to it."""
        for _ in range(RESAMPLES):
            arch = draw()
            if self.canon(arch) not in taken:
                break
        return self.untaken(arch, taken, rng)

    def random_untaken(self, taken: set[Arch], rng: np.random.RandomState) -> Arch:
        """A uniformly drawn architecture whose network is untaken (see draw_untaken)."""
        return self.draw_untaken(lambda: tuple(int(rng.randint(k)) for k in self.sizes), taken, rng)

    def neighbour(
        self,
        centre: Arch,
        taken: set[Arch],
        rng: np.random.RandomState,
        prefer: list[np.ndarray] | None = None,
    ) -> Arch | None:
        """A one-change neighbour of `centre` whose network is untaken, drawn as Real et al.'s
        mutation draws (a parameter uniformly, then a new value for it uniformly, so every
        parameter changes equally often whatever its number of choices); None if all are
        taken. `prefer[i][c]`, a weight per parameter and choice, tilts the draw: a move
        from choice a to b of parameter i is weighted by prefer[i][b] / prefer[i][a]."""
        neighbours, weights = [], []
        for i, k in enumerate(self.sizes):
            for choice in range(k):
                child = centre[:i] + (choice,) + centre[i + 1 :]
                if choice != centre[i] and self.canon(child) not in taken:
                    neighbours.append(child)
                    w = 1.0 / (k - 1)
                    if prefer is not None:
                        w *= prefer[i][choice] / prefer[i][centre[i]]
                    weights.append(w)
        if not neighbours:
            return None
        p = np.asarray(weights) / sum(weights)
        return neighbours[rng.choice(len(neighbours), p=p)]

    def untaken(self, arch: Arch, taken: set[Arch], rng: np.random.RandomState) -> Arch:
        """`arch` if its network is not taken, else an untaken one nearest to it (fewest
        parameters changed, drawn uniformly among those); `arch` itself only when every
        network of the space is taken."""
        if self.canon(arch) not in taken:
            return arch
        for distance in range(1, len(arch) + 1):
            found = []
            for where in itertools.combinations(range(len(arch)), distance):
                others = [[c for c in range(self.sizes[i]) if c != arch[i]] for i in where]
                for values in itertools.product(*others):
                    near = list(arch)
                    for i, c in zip(where, values, strict=True):
                        near[i] = c
                    if self.canon(tuple(near)) not in taken:
                        found.append(tuple(near))
                    if len(found) >= _NEAREST_CAP:
                        break
                if len(found) >= _NEAREST_CAP:
                    break
            if found:
                return found[rng.randint(len(found))]
        return arch

    def scan(
        self, trials: Sequence[FrozenTrial]
    ) -> tuple[list[tuple[FrozenTrial, Arch]], set[Arch]]:
        """The finished trials of this space in number order with their architectures, and
        the canonical form of every architecture that some trial has (evaluated, running, or
        waiting to run)."""
        # Optuna's public accessors fall short here: RetryHeartbeatStaleTrialCallback.retry_history
        # reads this same key but is experimental and warns on every call (this loop runs over
        # every trial at every proposal), and a WAITING trial's enqueued parameters have no
        # accessor at all. tests/samplers/test_history.py pins both keys against Optuna's own
        # retry callback and enqueue_trial, so a rename fails loudly there.
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
        history, taken = [], set()
        for t in sorted(trials, key=lambda t: t.number):
            if t.state == TrialState.WAITING:
                arch = self.encode(t.params or t.system_attrs.get("fixed_params"))
            else:
                arch = self.encode(t.params)
            if arch is None:
                continue
            taken.add(self.canon(arch))
            # Choices are not compared with the trial's distributions: Optuna already refuses
            # a parameter whose categorical choices differ from the study's earlier trials'.
            if t.state in _FINISHED and not (t.state == TrialState.FAIL and t.number in retried):
                history.append((t, arch))  # a retried FAIL is left to its retry to tell
        return history, taken


def rank_key(trial: FrozenTrial, signs: list[float]) -> RankKey:
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
        acc = records.last_acc(trial)
        value = -acc if acc is not None else math.inf
    return value if math.isfinite(value) else math.inf


def trial_rng(seed: int, number: int) -> np.random.RandomState:
    """The random state of one proposal: its own for every (seed, trial number)."""
    return np.random.RandomState(_trial_seed(seed, number))


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


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def check_int(name: str, value: Any, minimum: int) -> int:
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
