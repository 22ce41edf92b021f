"""A search as an Optuna study: settings, one trial, running, results, and the CLI.

    python -m nanonas.study --sampler nsga2            # the CLI (cli.py)
    study = nanonas.study.run(StudyConfig(...))         # the same from Python
    print(nanonas.study.summary(study))

The flow, one file per step: flags (cli.py) -> StudyConfig (config.py; presets.py reads the
TOML presets in nanonas/studies/) -> storage, sampler and pruner; open or resume the study,
refusing a changed recipe (run.py, recipe.py) -> one trial (objective.py): space.sample ->
budget -> duplicate -> train -> trial record (nanonas.records) -> what it found (summary.py),
shown as it runs (progress.py). `nano_nas()` (api.py) is the original nanoNAS API on top.
"""

from __future__ import annotations

from nanonas.study.api import nano_nas
from nanonas.study.cli import config_from_args, main
from nanonas.study.config import StudyConfig
from nanonas.study.presets import preset, presets
from nanonas.study.run import open_search, optimize, run
from nanonas.study.summary import best_trials, format_table, next_steps, summary

__all__ = [
    "StudyConfig",
    "best_trials",
    "config_from_args",
    "format_table",
    "main",
    "nano_nas",
    "next_steps",
    "open_search",
    "optimize",
    "preset",
    "presets",
    "run",
    "summary",
]
