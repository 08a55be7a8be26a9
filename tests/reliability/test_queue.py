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


async def test_a_version_announcement_carries_the_prescored_pool(own_redis):
    """A separate worker announces each version with its next pool already scored; the
    API replica reads back exactly those logits (and old-style announcements still
    parse)."""
    import asyncio

    import numpy as np

    from curator.selection.prescored import Prescored

    scores = Prescored(version=7, start=4096, bank_size=10_000,
                       positions=np.array([5, 9_999, 0, 17], dtype=np.int64),
                       logits=np.array([0.25, -1e-9, 3.5, -7.0]), active=True, top_p=0.9,
                       temperature=0.5, explore=0.125)
    pub = RedisStreamQueue(own_redis.url, "curator:q-ann", "g")
    sub = RedisStreamQueue(own_redis.url, "curator:q-ann", "g")
    got: list[tuple[int, int, str | None]] = []

    async def listen() -> None:
        async for item in sub.versions():
            got.append(item)
            if len(got) == 2:
                return

    try:
        task = asyncio.create_task(listen())
        await asyncio.sleep(0.2)  # subscribed
        await pub.announce(3, 6)
        await pub.announce(3, 7, scores.encode())
        await asyncio.wait_for(task, 5.0)
    finally:
        await pub.close()
        await sub.close()
    assert got[0] == (3, 6, None)
    run_id, version, payload = got[1]
    back = Prescored.decode(payload)
    assert (run_id, version) == (3, 7)
    assert back.matches(7, 4096, 10_000, 4)
    np.testing.assert_array_equal(back.logits, scores.logits)
    assert (back.active, back.top_p, back.temperature, back.explore) == (True, 0.9, 0.5, 0.125)
