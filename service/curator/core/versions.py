"""`VersionChannel`: how separate workers' new curator versions reach the API replicas.

The worker announces (worker/loop.py), the replicas' selection machinery listens and
preloads (selection/announcements.py); Redis pub/sub carries it in production
(worker/queue.py's `RedisStreamQueue` plays this role beside the feedback queue's). In
one process there is no channel: the embedded worker hands each version to the API
directly (selection/prescore.py's `SelectionHandover`). The protocol lives here, below
both sides, so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class VersionChannel(Protocol):
    async def announce(self, run_id: int, version: int, payload: str | None = None) -> None:
        """Tell API replicas a new curator version exists (they preload it); `payload`
        is the version's prescored next pool (selection/prescored.py), when there is one."""
        ...

    def versions(self) -> AsyncIterator[tuple[int, int, str | None]]:
        """The announcements, as (run_id, version, payload or None), until cancelled."""
        ...
