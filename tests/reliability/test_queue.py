"""The Redis feedback queue across a Redis restart (in-process, against a private Redis)."""

from __future__ import annotations

import pytest

from curator.worker.queue import RedisStreamQueue

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_put_and_get_survive_a_redis_restart(own_redis):
    """After Redis restarts (empty), the next put must reach the new stream instead of
    failing on a pooled connection the old server closed: a failed put leaves the ticket
    to the worker's sweep, which waits until it is 10 s old. The consumer side notices the
    lost stream (so the worker re-queues from the database) and then reads new entries."""
    q = RedisStreamQueue(own_redis.url, "curator:q-test", "g", claim_idle_ms=60_000)
    try:
        await q.put("t1")
        msg_id, ticket = await q.get(timeout=1.0)
        assert ticket == "t1"
        await q.ack(msg_id)
        own_redis.kill()
        own_redis.start()

        await q.put("t2")  # the first command after the restart
        r = own_redis.client()
        assert r.xlen("curator:q-test") == 1
        r.close()

        got = None
        for _ in range(5):
            got = await q.get(timeout=0.2)
            if got is not None:
                break
        assert got is not None and got[1] == "t2"
        assert q.lost_stream  # tells the worker loop to re-queue reported tickets
    finally:
        await q.close()
