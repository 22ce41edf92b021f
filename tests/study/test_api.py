"""nanonas.study.api: nano_nas(), the original nanoNAS API."""

from __future__ import annotations

import pytest

from nanonas.data import DeviceLoader, load, split
from nanonas.errors import ConfigError
from nanonas.samplers import EvolutionSampler
from nanonas.study import best_trials, nano_nas
from nanonas.train import evaluate


def test_nano_nas_returns_the_trained_best_network(tmp_path):
    model = nano_nas(
        "evolution",
        population_size=2,
        generations=2,
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=2,
        progress=False,
        storage=f"sqlite:///{tmp_path / 'api.db'}",
    )
    study = model.study
    assert len(study.trials) == 4
    assert isinstance(study.sampler, EvolutionSampler)  # aging evolution, as nanoNAS meant
    best = best_trials(study)[0]
    assert str(model.arch) == best.user_attrs["arch"]
    # retrained with its trial's seed, it is the network its trial measured
    _, val = split(load("synthetic"), seed=0)
    assert evaluate(model, DeviceLoader(val, batch_size=100, device="cpu")) == best.value


def test_nano_nas_rejects_unknown_strategies_and_options():
    with pytest.raises(
        ConfigError, match="unknown strategy 'annealing'; valid: nsga2, .*evolution"
    ):
        nano_nas("annealing")
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        nano_nas("evolution", epoch=3)
