"""A study's recipe: what makes its trials comparable, fixed when the study is created.

    made = recipe.make(config, full_training_set, split_seed=config.seed)
    recipe.check(existing_study, config, made)     # ConfigError naming the keys that differ

The recipe is the dataset and its identity (images, classes, image size, channels), the
validation fraction and the seed of the train/validation split, the training recipe (epochs,
batch size, learning rate, and the fixed parts of train.TrainConfig such as weight decay), the
search-space version, the widths, the objectives and the budgets (these decide which trials are
feasible). The StudyConfig fields among them are those declared with `recipe=True`.

A resume that changes any of them is refused in one line before anything is written: its trials
would be scored differently from the study's. Everything else (sampler, pruner, seed, workers,
devices, timeout, ...) may change on every run; each process that joins the study records its
own run entry (host, pid, start, settings, library versions) under a key of its own, and each
trial names its run entry (nanonas.records). The split seed is the creating run's `--seed`: a
resume splits with the stored one whatever `--seed` says, so every trial sees the same
validation images.

A study made by an older nanonas has no recipe; its `config` attribute (the last run's settings
then) stands in for one, and the first resume records the full recipe.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import socket
from typing import Any

import optuna
import torch

from nanonas import data, records, space
from nanonas.errors import ConfigError
from nanonas.study.config import OPTIONS, StudyConfig
from nanonas.train import TrainConfig

__all__ = ["check", "join", "make", "record_creation", "split_seed", "versions"]

# The fields of TrainConfig that shape the result; the rest say how it runs (device, layout, ...).
_TRAINING = ("warmup_epochs", "momentum", "weight_decay", "label_smoothing", "augment", "cutout")
_FIELDS = tuple(name for name, option in OPTIONS.items() if option.recipe)


def make(config: StudyConfig, full: data.ImageData, *, split_seed: int) -> dict[str, Any]:
    """The recipe of a study run with `config` on the (unsplit) training set `full`."""
    training = config.training(seed=0)
    made = {
        "images": len(full),
        "classes": full.num_classes,
        "image_size": full.image_size,
        "channels": int(full.images.shape[1]),
        "split_seed": split_seed,
        "space_version": space.SPACE_VERSION,
        **{name: getattr(config, name) for name in _FIELDS},
        **{name: getattr(training, name) for name in _TRAINING},
    }
    return json.loads(json.dumps(made))  # as the storage will give it back: tuples are lists


def split_seed(attrs: dict[str, Any], seed: int) -> int:
    """The seed of the study's train/validation split: the stored one, else this run's seed."""
    stored = _stored(attrs)
    return int(stored["split_seed"]) if stored and "split_seed" in stored else seed


def check(study: optuna.Study, config: StudyConfig, made: dict[str, Any]) -> None:
    """Refuse (ConfigError, one line) to add trials made by `made` to `study` if its own recipe
    differs, or if its objectives' directions are not this search's."""
    stored = _stored(study.user_attrs)
    if stored:
        differ = [
            f"{key.replace('_', '-')} {_show(stored[key])} (this run: {_show(value)})"
            for key, value in made.items()
            if key in stored and stored[key] != value
        ]
        if differ:
            raise ConfigError(
                f"study {config.name!r} was created with another recipe: {'; '.join(differ)}; "
                "its trials would not be comparable: pass a new --study-name, or resume with "
                "the study's values"
            )
    wanted = [records.OBJECTIVES[o] for o in config.objectives]
    have = [d.name.lower() for d in study.directions]
    if have != wanted:  # a study made elsewhere, with other objectives
        raise ConfigError(
            f"study {config.name!r} has objectives directions {','.join(have)}, not "
            f"{','.join(config.objectives)}; pass a new --study-name"
        )


def record_creation(
    study: optuna.Study,
    config: StudyConfig,
    made: dict[str, Any],
    train_set: data.ImageData,
    val_set: data.ImageData,
) -> None:
    """Write the study attributes fixed at creation that the study does not have yet."""
    records.write_creation(
        study,
        recipe=made,
        config=config.public(),
        space={
            "version": space.SPACE_VERSION,
            "ops": list(space.OP_NAMES),
            "blocks_per_stage": space.BLOCKS_PER_STAGE,
        },
        data={
            "dataset": config.dataset,
            "train": len(train_set),
            "val": len(val_set),
            "classes": train_set.num_classes,
            "image_size": train_set.image_size,
        },
        versions=versions(),
    )


def join(study: optuna.Study, config: StudyConfig, *, role: str) -> str:
    """Record that this process joins the study (as `role`); return its run entry's key."""
    # Microseconds: two runs in one process (nano_nas() twice) within a second got one key,
    # and the second entry replaced the first.
    now = datetime.datetime.now(datetime.timezone.utc)
    started = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    entry = {"role": role, "settings": config.public(), "versions": versions()}
    return records.add_run(
        study, started=started, host=socket.gethostname(), pid=os.getpid(), entry=entry
    )


def _stored(attrs: dict[str, Any]) -> dict[str, Any] | None:
    return records.recipe(attrs) or _legacy(attrs)


def _legacy(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """What the attributes of a study made before recipes existed say of its recipe."""
    config = records.study_config(attrs)
    if config is None:
        return None  # not made by nanonas: the first nanonas run sets the recipe
    made = {key: config[key] for key in _FIELDS if key in config}
    if "seed" in config:
        made["split_seed"] = config["seed"]
    version = records.study_space(attrs).get("version")
    if version is not None:
        made["space_version"] = version
    sizes = records.study_data(attrs)
    if "classes" in sizes:
        made["classes"] = sizes["classes"]
    if "image_size" in sizes:
        made["image_size"] = sizes["image_size"]
    # The training recipe then was TrainConfig's defaults.
    made |= {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in _TRAINING}
    return made


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def versions(*packages: str) -> dict[str, str]:
    """Python's, nanonas's, torch's and optuna's versions, and those of `packages`."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "nanonas": of("nanonas"),
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "optuna": optuna.__version__,
    } | {package: of(package) for package in packages}
