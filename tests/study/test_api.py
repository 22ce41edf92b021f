"""nanonas.study.api: nano_nas(), the original nanoNAS API."""

from __future__ import annotations

import pytest

from nanonas import records
from nanonas.data import load
from nanonas.errors import ConfigError
from nanonas.export import load_model
from nanonas.samplers import EvolutionSampler
from nanonas.study import best_trials, nano_nas


def test_nano_nas_returns_the_exported_best_network(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # its export folder is made in the working directory
    model = nano_nas(
        "evolution",
        population_size=2,
        generations=2,
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=1,
        progress=False,
        storage=f"sqlite:///{tmp_path / 'api.db'}",
        export_epochs=1,
    )
    study = model.study
    assert len(study.trials) == 4
    assert isinstance(study.sampler, EvolutionSampler)  # aging evolution, as nanoNAS meant
    best = best_trials(study)[0]
    assert str(model.arch) == best.user_attrs["arch"] and not model.training
    # exported as `python -m nanonas.export --trial N` does, into a folder of its own
    folder = tmp_path / f"export-nanonas-synthetic-accuracy-trial-{best.number}"
    assert str(folder.name) in capsys.readouterr().out
    assert load_model(folder).card == model.card and model.card["trial"] == best.number
    test = load("synthetic", train=False)
    accuracy = (model.predict(test.images) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(model.test_acc, abs=1e-6)
    assert [e["trial"] for e in records.exports(study.user_attrs)] == [best.number]


def test_nano_nas_refuses_an_existing_out_folder_before_searching(tmp_path):
    with pytest.raises(ConfigError, match="exists; pass --force"):
        nano_nas(
            "evolution", dataset="synthetic", out=tmp_path, storage=f"sqlite:///{tmp_path / 'x.db'}"
        )
    assert not (tmp_path / "x.db").exists()


def test_nano_nas_rejects_unknown_strategies_and_options():
    with pytest.raises(
        ConfigError, match="unknown strategy 'annealing'; valid: nsga2, .*evolution"
    ):
        nano_nas("annealing")
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        nano_nas("evolution", epoch=3)
