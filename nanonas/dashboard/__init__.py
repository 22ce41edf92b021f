"""What a study shows in optuna-dashboard: a picture and a note per trial, uploaded as it runs,
and the study's own plots.

    svg = architecture_svg(arch)          # nanonas.dashboard.picture
    text = trial_note(frozen_trial)       # nanonas.dashboard.note: Markdown
    plots.save(study)                     # nanonas.dashboard.plots: curves, front, ops, best
    optuna-dashboard sqlite:///nanonas.db --artifact-dir nanonas-artifacts

nanonas.dashboard.artifacts decides where the pictures go and uploads them with the notes.
"""

from __future__ import annotations

from nanonas.dashboard.note import trial_note
from nanonas.dashboard.picture import architecture_svg

__all__ = ["architecture_svg", "trial_note"]
