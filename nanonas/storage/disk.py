"""A full disk under an SQLite database or a journal file: recognised, and said in one line.

    if disk_full(error) is not None:
        print(where_full("sqlite:///runs/nanonas.db"))   # runs/nanonas.db (0 bytes free)

A full disk is not an outage: retrying the write would wait for ever (SQLite and the journal
file answer at once, with an error), so `nanonas.storage.fault` does not count it as one and
nanonas.study.run ends the run instead, naming the file and the free space. Server storages
(PostgreSQL, MySQL, Redis) report their own disks in their own errors.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3

import sqlalchemy

from nanonas.storage.urls import mask, parse

__all__ = ["disk_full", "file_of", "where_full"]


def disk_full(error: BaseException) -> BaseException | None:
    """The out-of-space error behind `error` (ENOSPC from a file write, SQLITE_FULL from SQLite,
    through SQLAlchemy's and Optuna's wrappers), or None when it is something else."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(current)
        ):
            return current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.orig is not None:
            found = disk_full(current.orig)
            if found is not None:
                return found
        current = current.__cause__ or current.__context__
    return None


def file_of(url: str) -> str | None:
    """The file that holds the storage `url`: the SQLite database or the journal file."""
    target = parse(url)
    return target.url if target.kind == "journal" else target.sqlite_file


def where_full(url: str) -> str:
    """'<file> (<free> free)' for the storage `url` (its URL, masked, if it is not a file)."""
    path = file_of(url)
    if path is None:
        return mask(url)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return path
    return f"{path} ({_size(free)} free)"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
