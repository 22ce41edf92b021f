"""Where a study lives, named by one string: a database URL, a Redis URL or a journal file.

    storage = open_storage("postgresql://user@db-host/nanonas")  # connects now, or one-line error
    check_url("mysql://root@db/nas")   # -> "mysql+pymysql://root@db/nas", without connecting
    mask("postgresql://u:pw@h/db")     # -> "postgresql://u:***@h/db", for messages and attrs

- `urls.py`: what a storage string may be, checked without connecting; the driver it gets.
- `connect.py`: opening it, one-line failures, heartbeats, reconnection.
"""

from __future__ import annotations

from nanonas.storage.connect import StorageError, open_storage, retry_callback
from nanonas.storage.urls import check_url, is_sqlite, mask

__all__ = ["StorageError", "check_url", "is_sqlite", "mask", "open_storage", "retry_callback"]
