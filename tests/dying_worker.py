"""Worker targets for tests/test_workers.py: in a module of their own, so that a spawned process
imports nothing heavy to find them."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from nanonas import workers


def die_of_sigterm(index: int, quota: int, done: Any, said: Any) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def fail_with_a_line(index: int, quota: int, done: Any, said: Any) -> None:
    """Every worker hits the same error (a full disk, say) and leaves its line."""
    workers.say(said, f"disk full: /data/s.log (0 B free); trial {index} is left RUNNING")
    sys.exit(1)
