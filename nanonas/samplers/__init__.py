"""Every sampler a study can use, by name: Optuna's, and nanonas's own for categorical spaces.

    sampler = make("evolution", search_space=space.distributions(), seed=0, population_size=20)

Optuna lacks these searches over categorical choices, so nanonas has them:
- `catcma.py`: CatCMA (COMO-CatCMA with several objectives), where Optuna's CmaEsSampler would
  hand categorical parameters to random sampling;
- `evolution.py`: regularized (aging) evolution;
- `local.py`: local search from the best architecture so far (White et al. 2020);
- `surrogate.py`: a Gaussian process picks the next step among the best trials' neighbours;
- `hybrid.py`: the surrogate first, then taking turns with Optuna's TPE;
- `history.py`: what they share: the space, the study's history and its ranking.
All but the hybrid keep no state of their own: a resumed study, or another worker, proposes
exactly what an uninterrupted one would (they are REPLAYABLE; TPE's random state is per process).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna

from nanonas.errors import ConfigError
from nanonas.samplers.catcma import CatCmaSampler
from nanonas.samplers.evolution import EvolutionSampler
from nanonas.samplers.hybrid import HybridSampler
from nanonas.samplers.local import LocalSearchSampler
from nanonas.samplers.surrogate import SurrogateSampler

__all__ = [
    "REPLAYABLE",
    "SAMPLERS",
    "CatCmaSampler",
    "EvolutionSampler",
    "HybridSampler",
    "LocalSearchSampler",
    "SurrogateSampler",
    "make",
]

# name -> factory(search_space=..., seed=..., population_size=..., canonical=...). Optuna's
# samplers ignore the search space (they learn it from the trials) and `canonical`.
SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "nsga2": lambda *, seed, population_size, **_: optuna.samplers.NSGAIISampler(
        population_size=population_size, seed=seed
    ),
    # Optuna 5 deprecates warn_independent_sampling (passing it warns); its default is off.
    "tpe": lambda *, seed, population_size, **_: optuna.samplers.TPESampler(
        seed=seed, multivariate=True
    ),
    "random": lambda *, seed, population_size, **_: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda *, seed, population_size, **_: optuna.samplers.QMCSampler(
        scramble=True, seed=seed
    ),
    "gp": lambda *, seed, population_size, **_: optuna.samplers.GPSampler(seed=seed),
    "cmaes": lambda *, search_space, seed, population_size, canonical: CatCmaSampler(
        search_space=search_space, seed=seed, canonical=canonical
    ),
    "evolution": lambda *, search_space, seed, population_size, canonical: EvolutionSampler(
        search_space=search_space,
        seed=seed,
        population_size=population_size,
        canonical=canonical,
    ),
    # population_size is NSGA-II's and evolution's: local search starts from its own 10 random
    # trials, the best of 5, 10 and 20 at 50 trials on NAS-Bench-201 (benchmarks/nb201.py).
    "local": lambda *, search_space, seed, canonical, **_: LocalSearchSampler(
        search_space=search_space, seed=seed, canonical=canonical
    ),
    "surrogate": lambda *, search_space, seed, canonical, **_: SurrogateSampler(
        search_space=search_space, seed=seed, canonical=canonical
    ),
    "hybrid": lambda *, search_space, seed, canonical, **_: HybridSampler(
        search_space=search_space, seed=seed, canonical=canonical
    ),
}

# Samplers whose proposals depend only on the seed and the stored trials.
REPLAYABLE = ("cmaes", "evolution", "local", "surrogate")


def make(
    name: str,
    *,
    search_space: dict[str, Any],
    seed: int,
    population_size: int,
    canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler called `name`; an unknown name is a ConfigError listing the valid ones.

    `canonical` (nanonas.space.canonical for nanonas's space) lets nanonas's own samplers
    avoid encodings of a network some trial already has."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():  # QMCSampler's "experimental" notice: nanonas chose it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](
            search_space=search_space,
            seed=seed,
            population_size=population_size,
            canonical=canonical,
        )
