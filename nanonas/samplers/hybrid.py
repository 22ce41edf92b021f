"""The surrogate leads, then takes turns with Optuna's TPE: the best of both on NAS-Bench-201.

    sampler = HybridSampler(search_space=space.distributions(), seed=0)
    study = optuna.create_study(sampler=sampler, storage="sqlite:///nanonas.db")

Why a combination: on NAS-Bench-201 (benchmarks/results/samplers-nb201.md) nanonas's surrogate
has the lowest regret of every sampler at 25 trials, but it climbs from the best trials'
neighbours and stalls by 100, where multivariate TPE, which samples whole architectures from
what the good trials share, keeps improving. So the first `handoff` trials are the
surrogate's; after them, every `every`-th trial is the surrogate's and the others are TPE's,
each reading all the trials the other proposed. The turns are decided by the trial's number,
so several workers sharing one study take them as one process would.

TPE may propose a network some trial already has (it draws from densities, not from what is
left); such a proposal is moved to the nearest untaken network, as nanonas's own samplers do,
so no trial is spent on a network the study has seen.

Not REPLAYABLE: TPE's random state lives in its process, so a resumed study proposes what TPE
draws there, not what an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nanonas.samplers.history import Space, check_int, check_seed, trial_rng
from nanonas.samplers.surrogate import SurrogateSampler

__all__ = ["HybridSampler"]


class HybridSampler(optuna.samplers.BaseSampler):
    """`SurrogateSampler` for the first `handoff` trials, then the surrogate for trials whose
    number is a multiple of `every` and multivariate `optuna.samplers.TPESampler` for the rest.
    handoff 40 and every 2 were chosen on NAS-Bench-201 seeds 100-129: taking turns lowered the
    regret at 100 trials on all three datasets against handing over to TPE for good
    (benchmarks/results/samplers-nb201.md). every 1 is the surrogate alone.

    Like nanonas's own samplers it searches only the categorical `search_space` it is given (a
    parameter outside it is a ValueError) and never proposes a network some trial already has
    while untaken ones remain; `canonical` says which encodings are one network
    (nanonas.space.canonical for nanonas's space).
    """

    def __init__(
        self,
        *,
        search_space: dict[str, CategoricalDistribution],
        seed: int = 0,
        handoff: int = 40,
        every: int = 2,
        canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        # Checked here first, so that a bad argument is named as the hybrid's, not the surrogate's.
        self._space = Space(search_space, "HybridSampler", canonical)
        self._seed = check_seed(seed)
        self._handoff = check_int("handoff", handoff, 0)
        self._every = check_int("every", every, 1)
        self._surrogate = SurrogateSampler(
            search_space=search_space, seed=seed, canonical=canonical
        )
        self._tpe = optuna.samplers.TPESampler(seed=self._seed, multivariate=True)

    def _tpe_turn(self, trial: FrozenTrial) -> bool:
        return trial.number >= self._handoff and trial.number % self._every != 0

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # Both see the whole space: the surrogate knows it; TPE learns it from the trials.
        return self._surrogate.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not self._tpe_turn(trial):
            return self._surrogate.sample_relative(study, trial, search_space)
        # TPE leaves single-choice parameters out of its own relative space, so they are
        # left out here too; Space.params gives them their only choice.
        searched = {n: d for n, d in search_space.items() if not d.single()}
        params = self._tpe.sample_relative(study, trial, searched)
        space = self._space
        arch = space.encode(params)
        if arch is None:  # TPE's own random start (fewer than 10 trials): independent sampling
            return params
        _, taken = space.scan(study.get_trials(deepcopy=False))
        return space.params(space.untaken(arch, taken, trial_rng(self._seed, trial.number)))

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self._tpe_turn(trial) and param_name in self._space.distributions:
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)
        # The surrogate's refusal names the space, as every nanonas sampler's does.
        return self._surrogate.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: list[float] | None,
    ) -> None:
        if self._tpe_turn(trial):
            self._tpe.after_trial(study, trial, state, values)
        else:
            self._surrogate.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()  # the surrogate's draws are seeded per trial: nothing to reseed
