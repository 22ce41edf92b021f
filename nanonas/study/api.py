"""`nano_nas()`: the original nanoNAS API, a search that returns its trained best network.

    model = nanonas.nano_nas("evolution", population_size=10, generations=5)   # CIFAR-10
    model.arch, model.study.best_trials

`evolution` is regularized (aging) evolution over population_size x generations trials, as the
original project's hand-written loop was; any sampler name works. Keyword options are
StudyConfig fields (dataset, epochs, storage, ...).
"""

from __future__ import annotations

from typing import Any

from nanonas import records
from nanonas.errors import ConfigError, NanonasError
from nanonas.model import NanoNet
from nanonas.samplers import SAMPLERS
from nanonas.study.config import OPTIONS, StudyConfig
from nanonas.study.run import open_search, optimize, run
from nanonas.study.summary import best_trials
from nanonas.train import train

__all__ = ["nano_nas"]


def nano_nas(
    strategy: str = "evolution", *, population_size: int = 10, generations: int = 5, **options: Any
) -> NanoNet:
    """Search as the original nanoNAS did and return the best architecture's trained NanoNet.

    The best architecture is trained once more with its trial's seed on the study's own split,
    so the returned network is the one its trial measured; `model.study` is the study,
    `model.arch` its architecture.
    """
    if strategy not in SAMPLERS:
        raise ConfigError(f"unknown strategy {strategy!r}; valid: {', '.join(SAMPLERS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(OPTIONS))}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ConfigError(f"generations must be a positive integer, got {generations!r}")
    config = StudyConfig(
        **{
            "sampler": strategy,
            "population_size": population_size,
            "n_trials": population_size * generations,
            **options,
        }
    )
    if config.workers > 1:
        study = run(config)
        search = open_search(config, role="retrain")  # the study's split, for the retraining
    else:
        search = open_search(config, role="main")  # once for the search and the retraining
        study = optimize(search)
    best = best_trials(study)
    if not best:
        raise NanonasError(f"no trial of study {config.name!r} completed; nothing to return")
    trial = max(best, key=lambda t: t.values[0])
    seed = records.read(trial).seed
    history = train(
        records.architecture(trial),
        config.training(seed=config.seed + trial.number if seed is None else seed),
        train_set=search.train_set,
        val_set=search.val_set,
    )
    model = history.model.eval()
    model.study = study
    return model
