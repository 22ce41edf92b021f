"""The exceptions nanonas raises for a user's mistake or environment, each with a one-line message.

The CLI prints `nanonas: error: <message>` for any NanonasError and exits non-zero; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse

__all__ = [
    "ConfigError",
    "DataError",
    "DiskFull",
    "DivergedError",
    "NanonasError",
    "OneLineParser",
    "StorageGone",
]


class NanonasError(Exception):
    """Bad input or a missing resource: the message is one line a user can act on."""


class ConfigError(NanonasError, ValueError):
    """An option has a bad value (the message names it and the valid choices)."""


class DataError(NanonasError):
    """A dataset is absent, unreadable or cannot be downloaded."""


class DivergedError(NanonasError):
    """Training produced a NaN or infinite loss; the trial fails with this as its reason."""


class StorageGone(NanonasError):
    """The storage stayed unreachable or silent for --reconnect-timeout seconds. Each process
    that saw it has printed its own line (naming its trial left RUNNING); exit status 75
    (EX_TEMPFAIL: try again later)."""

    EXIT_CODE = 75


class DiskFull(NanonasError):
    """The disk under the SQLite database or journal file is full: the message names the file,
    its free space and what became of the running trial (exit status 1)."""

    EXIT_CODE = 1


class OneLineParser(argparse.ArgumentParser):
    """The parser of every nanonas CLI: a bad flag is one ConfigError line, not usage + line."""

    def error(self, message: str) -> None:
        raise ConfigError(message)
