"""Fixtures of the export tests: see tiny_export.py."""

from __future__ import annotations

from tiny_export import exported, pareto, single  # noqa: F401 (pytest finds fixtures here)
