"""Per-minute request counts shared by every process, without a Redis round trip per request.

Each process counts requests in memory and adds its counts to the shared Redis counters in one
pipeline every ``flush_seconds`` (50 ms by default), learning the global totals in the same round
trip. A request is checked against the last known global total plus this process's unsent count.

That estimate can only lag behind what other processes counted since their last flush, so a
counter far below its limit is safe to count locally. Once a counter reaches half its limit, every
request on it goes to Redis at once (``INCRBY`` of what this process has pending, plus one) and is
checked against the exact total, as before. A limit is therefore never overrun by more than what
other processes admit in one flush interval while the counter was below half its limit, which is
nothing at all for small limits; unlimited counters (``None``) never wait for Redis.

Daily usage (``api_calls``) rides along in the same flush. If Redis is unreachable, counts stay
pending (at most ``MAX_PENDING_KEYS`` counters) and go out when it is back; requests are not
refused for want of Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("inopsio.quotas")

#: Per-minute counters live two minutes in Redis.
EXPIRE_SECONDS = 120
#: Beyond this many pending counters (Redis away for long), new counts are dropped, not queued.
MAX_PENDING_KEYS = 100_000
#: One flush is one command, whatever the number of counters: KEYS are the counters then the
#: hashes; ARGV is the number of counters, the expiry, each counter's amount, then (hash position,
#: field, amount) triples. A counter this flush created gets its expiry. Returns the counters' totals.
FLUSH_SCRIPT = """
local n = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local totals = {}
for i = 1, n do
  local amount = tonumber(ARGV[2 + i])
  local total = redis.call('INCRBY', KEYS[i], amount)
  if total == amount then redis.call('EXPIRE', KEYS[i], ttl) end
  totals[i] = total
end
for j = 3 + n, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2])
end
return totals
"""


class RateCounter:
    """See the module doc. One per process (``kernel.quotas.counter``)."""

    def __init__(self, redis: Redis, *, flush_seconds: float = 0.05) -> None:
        self.redis = redis
        self.flush_seconds = flush_seconds
        #: Counts not yet added to Redis, per counter key.
        self.pending: dict[str, int] = defaultdict(int)
        #: Per-day counts not yet added (hash key -> field -> amount).
        self.pending_daily: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        #: The global total Redis answered at the last flush, per counter key.
        self.known: dict[str, int] = {}
        self._flush_script = redis.register_script(FLUSH_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._warned_at = 0.0

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="inopsio-rate-counter")

    async def stop(self) -> None:
        """Stop the background flush and send what is pending (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def hit(self, key: str, limit: int | None) -> int:
        """Count one request on ``key``; the (estimated, see the module doc) total including it."""
        pending = self.pending
        if limit is None or self.known.get(key, 0) + pending[key] + 1 < limit / 2:
            pending[key] += 1
            if self._task is None:
                self.start()
            return self.known.get(key, 0) + pending[key]
        # Near the limit: exact, now.
        amount = pending.pop(key, 0) + 1
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrby(key, amount)
                pipe.expire(key, EXPIRE_SECONDS)
                total, _ = await pipe.execute()
        except Exception:
            pending[key] += amount
            self._warn()
            return 0  # Redis away: let the request through (module doc)
        self.known[key] = int(total)
        return int(total)

    def add_daily(self, hash_key: str, field: str, amount: int = 1) -> None:
        """Queue ``amount`` onto ``field`` of the Redis hash ``hash_key`` with the next flush."""
        self.pending_daily[hash_key][field] += amount
        if self._task is None:
            self.start()

    async def flush(self) -> None:
        """Send pending counts to Redis in one pipeline and learn the global totals."""
        async with self._lock:
            if not self.pending and not self.pending_daily:
                return
            pending, daily = self.pending, self.pending_daily
            self.pending = defaultdict(int)
            self.pending_daily = defaultdict(lambda: defaultdict(int))
            keys = list(pending)
            args: list[str | int] = [len(keys), EXPIRE_SECONDS, *pending.values()]
            hash_keys = list(daily)
            for position, hash_key in enumerate(hash_keys, start=len(keys) + 1):
                for field, amount in daily[hash_key].items():
                    args += [position, field, amount]
            try:
                totals = await self._flush_script(keys=[*keys, *hash_keys], args=args, client=self.redis)
            except Exception:
                self._restore(pending, daily)
                self._warn()
                return
            known = self.known
            for key, total in zip(keys, totals, strict=True):
                known[key] = int(total)

    def _restore(self, pending: dict[str, int], daily: dict[str, dict[str, int]]) -> None:
        for key, amount in pending.items():
            if key in self.pending or len(self.pending) < MAX_PENDING_KEYS:
                self.pending[key] += amount
        for hash_key, fields in daily.items():
            for field, amount in fields.items():
                self.pending_daily[hash_key][field] += amount

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30:
            self._warned_at = now
            log.warning("request counters unavailable (Redis); counts are kept and sent when it is back")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
                self._forget_old_minutes()
            except Exception:
                log.warning("flushing request counters failed", exc_info=True)

    def _forget_old_minutes(self) -> None:
        """Drop known totals of minutes that are over (keys end with ``:<minute>``)."""
        if len(self.known) < 1000:
            return
        current = int(time.time() // 60)
        for key in [k for k in self.known if not k.endswith((f":{current}", f":{current + 1}"))]:
            del self.known[key]
