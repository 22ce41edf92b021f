"""Optuna's Redis journal, written through a client that never re-sends a command by itself.

    storage = optuna.storages.JournalStorage(RedisJournal(url, connect_timeout=5, timeout=60))

Optuna's JournalRedisBackend builds its redis-py client itself, with redis-py's default retries
(3, after a ConnectionError or a TimeoutError). An append whose first try was applied but not
answered is then applied twice: a trial created twice, a tell logged twice. Optuna has no public
way to hand its backend a client, so this backend implements Optuna's public BaseJournalBackend
with the same keys (`<prefix>:log_number`, `<prefix>:log:<n>`) and the same atomic script,
through a client that does not retry. A fault reaches nanonas, which settles it from what the
journal holds (nanonas.study.settle). Studies stay readable by Optuna's own backend, so
`optuna-dashboard redis://...` works; tests/storage/test_redis_journal.py pins the layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis
from optuna.storages.journal import BaseJournalBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisJournal"]

_BATCH = 1000  # log entries fetched per round trip when a process catches up
# The script Optuna's JournalRedisBackend runs (optuna/storages/journal/_redis.py): numbering
# and storing an entry in one step, so that no reader ever sees a number without its entry.
_APPEND = (
    "local i = redis.call('incr', string.format('%s:log_number', ARGV[1])) "
    "redis.call('set', string.format('%s:log:%d', ARGV[1], i), ARGV[2])"
)


class RedisJournal(BaseJournalBackend):
    """The journal of `url` (redis://host:port/db); calls fail, never retry, after `timeout`."""

    def __init__(
        self, url: str, *, connect_timeout: float, timeout: float, prefix: str = ""
    ) -> None:
        self._prefix = prefix
        # Options given in the URL's query (socket_timeout=...) take precedence over these.
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        last = self._redis.get(f"{self._prefix}:log_number")
        if last is None:
            return
        for start in range(log_number_from, int(last) + 1, _BATCH):
            numbers = range(start, min(start + _BATCH, int(last) + 1))
            for log in self._redis.mget([f"{self._prefix}:log:{n}" for n in numbers]):
                if log is None:  # numbered but not yet stored: only a Redis Cluster does that
                    return
                yield json.loads(log)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._redis.setnx(f"{self._prefix}:log_number", -1)
        for log in logs:
            self._redis.eval(_APPEND, 0, self._prefix, json.dumps(log))

    def close(self) -> None:
        self._redis.close()
