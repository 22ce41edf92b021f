"""nanonas.study.config: StudyConfig, checked from its one declaration, and the presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nanonas.errors import ConfigError
from nanonas.study import StudyConfig
from nanonas.study.config import OPTIONS, shown_default

# A bad value for every field, and what the one-line refusal says.
BAD = {
    "sampler": ("anneal", "unknown sampler 'anneal'; valid: nsga2, tpe, random"),
    "pruner": ("asha", "unknown pruner 'asha'; valid: median, sha, hyperband, none"),
    "objectives": (("accuracy", "accuracy"), "objectives must be distinct names"),
    "max_params": (0, "max-params must be a positive integer, got 0"),
    "max_flops": (1.5, "max-flops must be a positive integer, got 1.5"),
    "storage": (3, "storage must be a string, got 3"),
    "study_name": (None, "study-name must be a string, got None"),
    "n_trials": (True, "n-trials must be a positive integer, got True"),
    "timeout": (0, "timeout must be a positive number of seconds, got 0"),
    "epochs": ("3", "epochs must be a positive integer, got '3'"),
    "dataset": ("imagenet", "unknown dataset 'imagenet'; valid: cifar10, cifar100"),
    "data_dir": (1, "data-dir must be a string, got 1"),
    "val_fraction": (1.0, "val-fraction must be between 0 and 1, got 1.0"),
    "seed": (0.5, "seed must be an integer, got 0.5"),
    "widths": ((), "widths must be positive integers, got ()"),
    "batch_size": (-1, "batch-size must be a positive integer, got -1"),
    "lr": (float("nan"), "lr must be a finite number >= 0, got nan"),
    "device": (0, "device must be a string, got 0"),
    "artifacts": (1, "artifacts must be a string, got 1"),
    "compile": (1, "compile must be true or false, got 1"),
    "population_size": (0, "population-size must be a positive integer, got 0"),
    "workers": (0, "workers must be a positive integer, got 0"),
    "launcher": ("slurm", "unknown launcher 'slurm'; valid: local, ray"),
    "ray_address": (None, "ray-address must be a string, got None"),
    "ray_gpus": (-1, "ray-gpus must be a finite number >= 0, got -1"),
    "ray_cpus": (float("inf"), "ray-cpus must be a finite number >= 0, got inf"),
    "devices": ((-1,), "devices must be CUDA device indices, got (-1,)"),
    "heartbeat_interval": (2.0, "heartbeat-interval must be a positive integer, got 2.0"),
    "reconnect_timeout": (0, "reconnect-timeout must be a positive number of seconds, got 0"),
    "progress": ("yes", "progress must be true or false, got 'yes'"),
}


def test_every_field_is_declared_with_help_and_a_bad_value_here():
    assert set(BAD) == set(OPTIONS) == {f.name for f in dataclasses.fields(StudyConfig)}
    for name, option in OPTIONS.items():
        assert option.help and shown_default(name)


@pytest.mark.parametrize("name", BAD)
def test_a_bad_value_is_refused_naming_it(name):
    value, message = BAD[name]
    with pytest.raises(ConfigError) as refused:
        StudyConfig(**{name: value})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_checks_that_span_fields():
    with pytest.raises(ConfigError, match="objectives must begin with accuracy"):
        StudyConfig(objectives=("params", "accuracy"))
    with pytest.raises(ConfigError, match=r"workers \(3\) must not exceed n-trials \(2\)"):
        StudyConfig(workers=3, n_trials=2)
    with pytest.raises(ConfigError, match="malformed storage URL"):
        StudyConfig(storage="sqlite:/x.db")


def test_recipe_fields_are_those_that_make_trials_comparable():
    recipe = {name for name, option in OPTIONS.items() if option.recipe}
    assert recipe == {
        "dataset",
        "val_fraction",
        "epochs",
        "batch_size",
        "lr",
        "widths",
        "objectives",
        "max_params",
        "max_flops",
    }


def test_the_password_of_a_storage_url_is_never_stored():
    config = StudyConfig(storage="postgresql://nas:hunter2@db.example/studies")
    public = config.public()
    assert "hunter2" not in json.dumps(public)
    assert public["storage"] == "postgresql://nas:***@db.example/studies"
    assert public["study_name"] == "nanonas-cifar10-accuracy"


def test_the_default_sampler_is_chosen_by_the_number_of_objectives():
    """benchmarks/results/samplers-nb201.md: the hybrid with one objective, TPE with several;
    a chosen sampler is kept, and the study's settings record the one that ran."""
    assert StudyConfig().sampler is None and StudyConfig().sampler_name == "hybrid"
    pareto = StudyConfig(objectives=("accuracy", "params"))
    assert pareto.sampler_name == "tpe" and pareto.public()["sampler"] == "tpe"
    chosen = StudyConfig(sampler="nsga2", objectives=("accuracy", "params"))
    assert chosen.sampler_name == "nsga2" and chosen.public()["sampler"] == "nsga2"
    assert shown_default("sampler") == "hybrid with one objective, tpe with several"


def test_shown_defaults():
    assert shown_default("widths") == "24,32,48,64"
    assert shown_default("max_params") == "none" and shown_default("devices") == "none"
    assert shown_default("compile") == "off" and shown_default("progress") == "on"
    assert shown_default("study_name") == "nanonas-<dataset>-<objectives>"
