"""Request counts shared through Redis in batches (``inopsio.quotas.counter``) and ended sessions
known to every process (``inopsio.identity.revocations``)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from inopsio.identity.revocations import SessionRevocations
from inopsio.quotas.counter import RateCounter


def key() -> str:
    return f"test:{secrets.token_hex(6)}:rate:{int(time.time() // 60)}"


async def test_far_from_the_limit_counts_stay_local_then_reach_redis(kernel: Any) -> None:
    counter, k = RateCounter(kernel.redis, flush_seconds=3600), key()
    counts = [await counter.hit(k, None) for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    assert await kernel.redis.get(k) is None  # nothing sent yet
    await counter.flush()
    assert int(await kernel.redis.get(k)) == 5
    assert 0 < await kernel.redis.ttl(k) <= 120


async def test_two_processes_never_admit_more_than_the_limit(kernel: Any) -> None:
    """Counters of two processes on one key: near the limit each hit is exact."""
    first, second = RateCounter(kernel.redis, flush_seconds=3600), RateCounter(kernel.redis, flush_seconds=3600)
    k, limit = key(), 20
    admitted = 0
    for i in range(60):
        counter = first if i % 2 else second
        if await counter.hit(k, limit) <= limit:
            admitted += 1
        if i % 7 == 0:
            await counter.flush()
    await first.flush()
    await second.flush()
    assert admitted == limit
    assert int(await kernel.redis.get(k)) == 60  # refused requests are counted too


async def test_a_small_limit_is_exact_from_the_first_hit(kernel: Any) -> None:
    counter, k = RateCounter(kernel.redis, flush_seconds=3600), key()
    assert [await counter.hit(k, 2) for _ in range(3)] == [1, 2, 3]
    assert int(await kernel.redis.get(k)) == 3


async def test_counts_wait_for_redis_and_arrive_when_it_is_back(kernel: Any) -> None:
    away = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)  # type: ignore[no-untyped-call]
    counter, k = RateCounter(away, flush_seconds=3600), key()
    assert [await counter.hit(k, None) for _ in range(3)] == [1, 2, 3]
    assert await counter.hit(k, 4) == 0  # exact check impossible: let through
    counter.add_daily("test:daily", "field", 2)
    await counter.flush()  # fails, keeps everything
    assert counter.pending[k] == 4
    counter.redis = kernel.redis
    await counter.flush()
    assert int(await kernel.redis.get(k)) == 4
    assert not counter.pending
    await away.aclose()
    await kernel.redis.delete("test:daily")


async def test_an_ended_session_is_known_to_every_process(kernel: Any) -> None:
    namespace = f"test-{secrets.token_hex(4)}"
    here = SessionRevocations(kernel.redis, namespace, keep_seconds=60)
    there = SessionRevocations(kernel.redis, namespace, keep_seconds=60)
    following = asyncio.create_task(there.follow())
    try:
        await asyncio.sleep(0.2)  # subscribed
        ended = uuid.uuid4()
        await here.announce([ended])
        assert here.is_revoked(ended)  # at once where it was ended
        for _ in range(50):
            if there.is_revoked(ended):
                break
            await asyncio.sleep(0.02)
        assert there.is_revoked(ended)
        assert not there.is_revoked(uuid.uuid4())
        # A process that starts later reads the marks still in force.
        later = SessionRevocations(kernel.redis, namespace, keep_seconds=60)
        await later.reload()
        assert later.is_revoked(ended)
    finally:
        following.cancel()
        await kernel.redis.delete(here.key)


async def test_a_mark_lapses_with_the_tokens_lifetime(kernel: Any) -> None:
    revocations = SessionRevocations(kernel.redis, f"test-{secrets.token_hex(4)}", keep_seconds=1)
    ended = uuid.uuid4()
    await revocations.announce([ended])
    assert revocations.is_revoked(ended)
    await asyncio.sleep(1.1)
    assert not revocations.is_revoked(ended)
    fresh = SessionRevocations(kernel.redis, revocations.key.split(":")[0], keep_seconds=1)
    await fresh.reload()
    assert not fresh.is_revoked(ended)
