"""A worker target for tests/test_workers.py that dies of SIGTERM at once: in a module of its own,
so that a spawned process imports nothing heavy to find it."""

from __future__ import annotations

import os
import signal
from typing import Any


def die_of_sigterm(index: int, quota: int, done: Any) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
