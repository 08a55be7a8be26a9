"""Feedback queues. They carry ticket ids only; the database stays the record.

`InProcessQueue` (embedded default) is an asyncio queue inside the server process.
`RedisStreamQueue` (production) is a Redis stream with a consumer group: entries are
acknowledged only after the ticket is applied, and entries a dead consumer left
pending are claimed by another (XAUTOCLAIM).

`RedisStreamQueue` also plays a second, separate role over the same connection: the
`VersionChannel` (core/versions.py) by which separate workers announce each new curator
version to the API replicas (Redis pub/sub).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Protocol


class FeedbackQueue(Protocol):
    lost_stream: bool  # the queue lost what it held (a Redis restart): re-queue from the DB

    async def put(self, ticket_id: str) -> None: ...

    async def get(self, timeout: float = 1.0) -> tuple[str, str] | None:
        """Next (message_id, ticket_id), or None after `timeout` seconds."""
        ...

    async def ack(self, message_id: str) -> None: ...

    async def depth(self) -> int: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class InProcessQueue:
    def __init__(self) -> None:
        self._q: asyncio.Queue[str] = asyncio.Queue()
        self.lost_stream = False  # nothing outside the process to lose it

    async def put(self, ticket_id: str) -> None:
        self._q.put_nowait(ticket_id)

    async def get(self, timeout: float = 1.0) -> tuple[str, str] | None:
        try:
            tid = await asyncio.wait_for(self._q.get(), timeout)
        except asyncio.TimeoutError:
            return None
        return tid, tid

    async def ack(self, message_id: str) -> None:
        self._q.task_done()

    async def depth(self) -> int:
        return self._q.qsize()

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisStreamQueue:
    def __init__(self, url: str, stream: str, group: str, consumer: str | None = None,
                 claim_idle_ms: int = 30_000) -> None:
        import redis.asyncio as aioredis
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # A restarted Redis closes every pooled connection: retry on a fresh one instead of
        # failing the first command on each (a failed put waits for the worker's sweep).
        self._r = aioredis.from_url(
            url, decode_responses=True, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.claim_idle_ms = claim_idle_ms
        self._group_ready = False
        self.lost_stream = False  # set when Redis lost the stream (restart): re-queue
        self.version_channel = f"{stream}:versions"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        import redis.exceptions

        try:
            await self._r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def put(self, ticket_id: str) -> None:
        await self._r.xadd(self.stream, {"ticket_id": ticket_id})

    async def get(self, timeout: float = 1.0) -> tuple[str, str] | None:
        import redis.exceptions

        try:
            await self._ensure_group()
            # Entries another consumer took but never acknowledged (it died) come first.
            _, claimed, *_ = await self._r.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
                start_id="0-0", count=1)
            if claimed:
                msg_id, fields = claimed[0]
                return msg_id, fields["ticket_id"]
            resp = await self._r.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                            count=1, block=int(timeout * 1000))
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted and lost the stream: recreate
                self._group_ready = False
                self.lost_stream = True
                return None
            raise
        if not resp:
            return None
        _, entries = resp[0]
        msg_id, fields = entries[0]
        return msg_id, fields["ticket_id"]

    async def ack(self, message_id: str) -> None:
        await self._r.xack(self.stream, self.group, message_id)
        await self._r.xdel(self.stream, message_id)

    async def depth(self) -> int:
        try:
            info = await self._r.xinfo_groups(self.stream)
        except Exception:
            return 0
        for g in info:
            if g["name"] == self.group:
                return int(g.get("lag") or 0) + int(g.get("pending") or 0)
        return 0

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except Exception:
            return False

    async def announce(self, run_id: int, version: int, payload: str | None = None) -> None:
        message = f"{run_id}:{version}" + ("" if payload is None else f":{payload}")
        await self._r.publish(self.version_channel, message)

    async def versions(self):
        """Async iterator of (run_id, version, payload or None) announcements."""
        pubsub = self._r.pubsub()
        await pubsub.subscribe(self.version_channel)
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                run_id, _, rest = str(message["data"]).partition(":")
                version, _, payload = rest.partition(":")
                if run_id.isdigit() and version.isdigit():
                    yield int(run_id), int(version), payload or None
        finally:
            await pubsub.aclose()

    async def close(self) -> None:
        await self._r.aclose()
