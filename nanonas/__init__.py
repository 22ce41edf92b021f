"""nanonas: neural architecture search for small CNNs on top of Optuna.

    import nanonas
    model = nanonas.nano_nas("evolution", population_size=10, generations=5, dataset="synthetic")
    model.test_acc, model.card, model.predict(images)   # retrained, tested once, exported
    model = nanonas.load_model("nanonas-export-...")      # the folder it printed

The pieces compose without Optuna too: `Architecture.parse(...)` -> `NanoNet(arch)` ->
`train(arch, TrainConfig(), train_set=..., val_set=...)`. The CLIs are `python -m nanonas.study`
and `python -m nanonas.export`.
"""

from __future__ import annotations

from typing import Any

from nanonas.data import DATASETS, ImageData, load, split
from nanonas.errors import ConfigError, DataError, DivergedError, NanonasError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.space import OP_NAMES, OPS, SPACE_VERSION, Architecture, sample
from nanonas.train import History, TrainConfig, train

__all__ = [
    "DATASETS",
    "OPS",
    "OP_NAMES",
    "SPACE_VERSION",
    "Architecture",
    "ConfigError",
    "DataError",
    "DivergedError",
    "ExportedNet",
    "History",
    "ImageData",
    "NanoNet",
    "NanonasError",
    "StudyConfig",
    "TrainConfig",
    "count_flops",
    "count_params",
    "load",
    "load_model",
    "nano_nas",
    "run",
    "sample",
    "split",
    "train",
]

_FROM_STUDY = ("StudyConfig", "nano_nas", "run")
_FROM_EXPORT = ("ExportedNet", "load_model")


def __getattr__(name: str) -> Any:
    # nanonas.study is imported on first use, not here: it brings Optuna and SQLAlchemy, which
    # the model, data and training code need not pay for.
    if name in _FROM_STUDY:
        from nanonas import study

        return getattr(study, name)
    if name in _FROM_EXPORT:
        from nanonas import export

        return getattr(export, name)
    raise AttributeError(f"module 'nanonas' has no attribute {name!r}")
