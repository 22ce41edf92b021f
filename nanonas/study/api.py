"""`nano_nas()`: the original nanoNAS API, a search that returns its best network, retrained,
tested once and exported.

    model = nanonas.nano_nas("evolution", population_size=10, generations=5)   # CIFAR-10
    model.test_acc, model.card, model.predict(images), model.arch, model.study

`evolution` is regularized (aging) evolution over population_size x generations trials, as the
original project's hand-written loop was; any sampler name works. Keyword options are
StudyConfig fields (dataset, epochs, storage, ...), plus `out` (the export folder; default a new
./export-<study>-trial-<N>) and `export_epochs` (the retraining's, default 30).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanonas.errors import ConfigError, NanonasError
from nanonas.samplers import SAMPLERS
from nanonas.study.config import OPTIONS, StudyConfig
from nanonas.study.run import run
from nanonas.study.summary import best_trials

if TYPE_CHECKING:
    from nanonas.export import ExportedNet

__all__ = ["nano_nas"]


def nano_nas(
    strategy: str = "evolution",
    *,
    population_size: int = 10,
    generations: int = 5,
    out: str | Path | None = None,
    export_epochs: int = 30,  # nanonas.export.DEFAULT_EPOCHS, as the original's final training
    **options: Any,
) -> ExportedNet:
    """Search as the original nanoNAS did; return the best architecture's network.

    The best trial (of a Pareto set, the most accurate) is exported exactly as `python -m
    nanonas.export --trial N` does: retrained from scratch on train + validation for
    `export_epochs`, scored once on the test split, saved into a folder of its own (printed)
    and loaded back. `model.test_acc` and `model.card` say how it did; `model.study` is the
    study, `model.arch` its architecture.
    """
    # Here, not at the top: nanonas.export reads studies through nanonas.study.summary, whose
    # package imports this module.
    from nanonas.export.load import load_model
    from nanonas.export.run import check_folder, default_folder, export, free_folder

    if strategy not in SAMPLERS:
        raise ConfigError(f"unknown strategy {strategy!r}; valid: {', '.join(SAMPLERS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(OPTIONS))}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ConfigError(f"generations must be a positive integer, got {generations!r}")
    if isinstance(export_epochs, bool) or not isinstance(export_epochs, int) or export_epochs < 1:
        raise ConfigError(f"export_epochs must be a positive integer, got {export_epochs!r}")
    config = StudyConfig(
        **{
            "sampler": strategy,
            "population_size": population_size,
            "n_trials": population_size * generations,
            **options,
        }
    )
    if out is not None:
        check_folder(Path(out), force=False)  # refused now, not after the search
    study = run(config)
    best = best_trials(study)
    if not best:
        raise NanonasError(f"no trial of study {config.name!r} completed; nothing to return")
    trial = max(best, key=lambda t: t.values[0])
    folder = (
        Path(out) if out is not None else free_folder(default_folder(config.name, trial.number))
    )
    export(
        storage=config.storage,
        study_name=config.name,
        trial=trial.number,
        out=folder,
        epochs=export_epochs,
        device=config.device,
        data_dir=config.data_dir,
        progress=config.progress,
    )
    model = load_model(folder)
    print(
        f"nano_nas: trial {trial.number} retrained for {export_epochs} epochs, test accuracy "
        f"{model.test_acc:.4f}; exported to {folder}/ (nanonas.load_model({str(folder)!r}))"
    )
    model.study = study
    return model
