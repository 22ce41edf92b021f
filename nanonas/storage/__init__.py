"""Where a study lives, named by one string: a database URL, a Redis URL or a journal file.

    storage = open_storage("postgresql://user@db-host/nanonas")  # connects now, or one-line error
    check_url("mysql://root@db/nas")   # -> "mysql+pymysql://root@db/nas", without connecting
    mask("postgresql://u:pw@h/db")     # -> "postgresql://u:***@h/db", for messages and attrs

- `urls.py`: what a storage string may be, checked without connecting; the driver it gets.
- `connect.py`: opening it, one-line failures, faults that surface quickly (`fault`).
- `contact.py`: is it answering? retries of idempotent calls, and the watchdog for silence.
- `disk.py`: a full disk under an SQLite database or a journal file (`disk_full`).
- `redis_journal.py`: Optuna's Redis journal layout, through a client that never re-sends.
- `proxy.py`: a TCP proxy that drops, freezes or refuses connections, for fault tests.
"""

from __future__ import annotations

from nanonas.storage.connect import ConnectionLost, StorageError, fault, open_storage
from nanonas.storage.contact import Contact
from nanonas.storage.disk import disk_full, where_full
from nanonas.storage.urls import check_url, is_sqlite, mask

__all__ = [
    "ConnectionLost",
    "Contact",
    "StorageError",
    "check_url",
    "disk_full",
    "fault",
    "is_sqlite",
    "mask",
    "open_storage",
    "where_full",
]
