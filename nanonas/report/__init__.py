"""`python -m nanonas.report`: one study as a self-contained HTML page (nanonas.report.page)."""

from __future__ import annotations

from nanonas.report.page import render, write_report

__all__ = ["render", "write_report"]
