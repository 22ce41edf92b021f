"""nanonas.study.recipe: what a study's recipe holds, and the refusal of a changed one."""

from __future__ import annotations

import optuna
import pytest

from nanonas import data, records
from nanonas.errors import ConfigError
from nanonas.space import SPACE_VERSION
from nanonas.study import StudyConfig, recipe

FULL = data.load("synthetic")


def test_the_recipe_holds_the_data_split_training_space_and_budgets():
    config = StudyConfig(dataset="synthetic", epochs=4, lr=0.2, widths=(8, 16), max_flops=10**6)
    made = recipe.make(config, FULL, split_seed=9)
    assert made == {
        "dataset": "synthetic",
        "images": len(FULL),
        "classes": 10,
        "image_size": 16,
        "channels": 3,
        "split_seed": 9,
        "space_version": SPACE_VERSION,
        "objectives": ["accuracy"],
        "max_params": None,
        "max_flops": 10**6,
        "epochs": 4,
        "val_fraction": 0.1,
        "widths": [8, 16],
        "batch_size": 256,
        "lr": 0.2,
        "warmup_epochs": 0.5,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": True,
        "cutout": 0,
    }


def _study(made: dict) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("recipe", made)
    return study


def test_settings_outside_the_recipe_may_change():
    config = StudyConfig(dataset="synthetic")
    study = _study(recipe.make(config, FULL, split_seed=0))
    other = StudyConfig(
        dataset="synthetic",
        sampler="cmaes",
        pruner="none",
        seed=4,
        population_size=3,
        n_trials=9,
        workers=2,
        timeout=5,
        device="cpu",
        compile=True,
        progress=False,
        heartbeat_interval=7,
        data_dir="elsewhere",
    )
    recipe.check(study, other, recipe.make(other, FULL, split_seed=0))


def test_every_difference_is_named_in_one_line():
    config = StudyConfig(dataset="synthetic")
    study = _study(recipe.make(config, FULL, split_seed=0))
    other = StudyConfig(dataset="synthetic", epochs=3, widths=(8,))
    bigger = data.ImageData.create(FULL.images[:100], FULL.labels[:100], FULL.classes)
    with pytest.raises(ConfigError) as refused:
        recipe.check(study, other, recipe.make(other, bigger, split_seed=1))
    message = str(refused.value)
    assert "\n" not in message
    for part in (
        "images 2000 (this run: 100)",
        "split-seed 0 (this run: 1)",
        "epochs 10 (this run: 3)",
        "widths 24,32,48,64 (this run: 8)",
    ):
        assert part in message


def test_the_split_seed_is_the_stored_one():
    assert recipe.split_seed({}, 5) == 5
    assert recipe.split_seed({"recipe": {"split_seed": 2}}, 5) == 2
    assert recipe.split_seed({"config": {"seed": 3}}, 5) == 3  # a study from nanonas 0.1


def test_join_records_one_entry_per_process_with_the_password_masked():
    study = optuna.create_study()
    config = StudyConfig(storage="postgresql://u:hunter2@db/x")
    key = recipe.join(study, config, role="worker 1")
    entry = records.runs(study.user_attrs)[key]
    assert entry["role"] == "worker 1" and "hunter2" not in str(entry)
    assert entry["settings"]["storage"] == "postgresql://u:***@db/x"
    assert set(entry) >= {"started", "host", "pid", "settings", "versions"}


def test_two_joins_of_one_process_keep_two_entries():
    # nano_nas() twice in one process, within a second: the second entry once replaced the first.
    study = optuna.create_study()
    keys = {recipe.join(study, StudyConfig(), role="main") for _ in range(3)}
    assert len(keys) == 3 == len(records.runs(study.user_attrs))
