"""What a study shows in optuna-dashboard: its own plots (nanonas.dashboard.plots)."""

from __future__ import annotations

__all__: list[str] = []
