"""nanonas.samplers: every sampler a study can name, built by one registry."""

from __future__ import annotations

import warnings

import optuna
import pytest

from nanonas import space
from nanonas.errors import ConfigError
from nanonas.samplers import (
    REPLAYABLE,
    SAMPLERS,
    CatCmaSampler,
    EvolutionSampler,
    HybridSampler,
    LocalSearchSampler,
    SurrogateSampler,
    make,
)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_name_builds_its_sampler_without_warnings(name):
    with warnings.catch_warnings():
        # A user would see any: Optuna 5 deprecates some arguments with a FutureWarning.
        warnings.simplefilter("error")
        sampler = make(name, search_space=space.distributions(), seed=3, population_size=4)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_nanonas_samplers_are_the_replayable_ones():
    built = {
        name: make(name, search_space=space.distributions(), seed=0, population_size=4)
        for name in REPLAYABLE
    }
    assert isinstance(built["cmaes"], CatCmaSampler)
    assert isinstance(built["evolution"], EvolutionSampler)
    assert isinstance(built["local"], LocalSearchSampler)
    assert isinstance(built["surrogate"], SurrogateSampler)
    # The hybrid is nanonas's, but its TPE turns draw from a random state kept in the process.
    hybrid = make("hybrid", search_space=space.distributions(), seed=0, population_size=4)
    assert isinstance(hybrid, HybridSampler) and "hybrid" not in REPLAYABLE
    nsga2 = make("nsga2", search_space=space.distributions(), seed=0, population_size=6)
    assert isinstance(nsga2, optuna.samplers.NSGAIISampler)


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown sampler 'anneal'; valid: nsga2, tpe, random"):
        make("anneal", search_space=space.distributions(), seed=0, population_size=4)
