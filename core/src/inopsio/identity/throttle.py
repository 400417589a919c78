"""Brute-force protection for sign-in, shared by every process through Redis.

Failures are counted per account *and source address*, so that someone guessing from one place
cannot lock the account's holder out everywhere else:

- **Per account and source.** After ``max_failures`` failed sign-ins of one account from one source,
  each further attempt from that source must wait: 30 s, then twice as long after every new failure,
  at most ``lockout_seconds``. Until then the answer is 429 with ``Retry-After``. The count lasts a
  day after the last failure; a successful sign-in from that source clears it.
- **Per account, from many sources (spraying).** When ``spray_sources`` distinct sources have failed
  on one account within an hour, the account is locked for ``lockout_seconds`` for every source it
  has not signed in from successfully in the last 30 days: its holder's own devices still get in.
- **Per source, over every account (credential stuffing).** ``address_max_failures`` failures from
  one source within ``lockout_seconds`` lock that source out, whatever the account.

A source is the client's IPv4 address, or its IPv6 /64 network (one customer's allocation, which a
single attacker can cycle through). Accounts are counted by the address as typed, known or not, so
the throttle's answers say nothing about which accounts exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from inopsio.errors import Problem

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: The first wait after ``max_failures`` failures from one source; it doubles with every failure after.
FIRST_DELAY_SECONDS = 30
#: How long failures of one account from one source are remembered after the last one.
PAIR_MEMORY_SECONDS = 24 * 3600
#: The window in which distinct failing sources of one account are counted.
SPRAY_WINDOW_SECONDS = 3600
#: Sources an account signed in from within this time still get in while it is locked for spraying.
KNOWN_SOURCE_SECONDS = 30 * 24 * 3600
KNOWN_SOURCE_LIMIT = 20


def source_of(address: str) -> str:
    """The source an address counts as: itself for IPv4, its /64 network for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _locked(ttl: int, why: str) -> Problem:
    minutes, seconds = divmod(ttl, 60)
    return Problem(
        429,
        "login-locked",
        f"{why} Try again in {minutes} min {seconds} s, or reset your password.",
        headers={"Retry-After": str(ttl)},
        retry_after=ttl,
    )


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        max_failures: int,
        lockout_seconds: int,
        *,
        spray_sources: int = 20,
        address_max_failures: int = 100,
    ) -> None:
        self.redis = redis
        self.ns = namespace
        #: Failures of one account from one source before each further attempt from there waits.
        self.max_failures = max_failures
        #: The longest wait, and how long a sprayed account or a stuffing source stays locked.
        self.lockout_seconds = lockout_seconds
        self.spray_sources = spray_sources
        self.address_max_failures = address_max_failures

    def _account_id(self, account: str) -> str:
        # Hashed so Redis holds no plain e-mail addresses.
        return hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]

    def _pair_keys(self, account_id: str, source: str) -> tuple[str, str]:
        """The failure count of an account from a source, and the wait it imposes (a key with a TTL)."""
        return (
            f"{self.ns}:login-fail:pair:{account_id}:{source}",
            f"{self.ns}:login-wait:pair:{account_id}:{source}",
        )

    def _source_key(self, source: str) -> str:
        return f"{self.ns}:login-fail:source:{source}"

    def _spray_keys(self, account_id: str) -> tuple[str, str, str]:
        """Failing sources of an account (sorted by time), its spraying lock, and its known sources."""
        return (
            f"{self.ns}:login-fail:sources:{account_id}",
            f"{self.ns}:login-lock:acct:{account_id}",
            f"{self.ns}:login-ok:sources:{account_id}",
        )

    def delay_after(self, failures: int) -> int:
        """Seconds the next attempt from a source waits after ``failures`` failures from it (0: none)."""
        if failures < self.max_failures:
            return 0
        return int(min(self.lockout_seconds, FIRST_DELAY_SECONDS * 2 ** min(failures - self.max_failures, 30)))

    async def before_attempt(self, account: str, address: str) -> None:
        """Refuse (429, with ``Retry-After``) an attempt that must wait; 503 when Redis is down."""
        account_id, source = self._account_id(account), source_of(address)
        _, wait_key = self._pair_keys(account_id, source)
        _, lock_key, known_key = self._spray_keys(account_id)
        source_key = self._source_key(source)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.ttl(wait_key)
                pipe.get(source_key)
                pipe.ttl(source_key)
                pipe.ttl(lock_key)
                pipe.zscore(known_key, source)
                wait_ttl, source_failures, source_ttl, lock_ttl, known_at = await pipe.execute()
        except RedisError:
            # Without its counts the throttle cannot stop password guessing: refuse, and say so (not a 500).
            raise Problem(
                503,
                "login-unavailable",
                "Signing in is unavailable for a moment. Try again shortly.",
                headers={"Retry-After": "30"},
            ) from None
        refusals: list[tuple[int, str]] = []
        if wait_ttl > 0:
            refusals.append((wait_ttl, "Too many failed sign-ins from here."))
        if int(source_failures or 0) >= self.address_max_failures:
            refusals.append((max(source_ttl, 1), "Too many failed sign-ins from this address."))
        known = known_at is not None and float(known_at) > time.time() - KNOWN_SOURCE_SECONDS
        if lock_ttl > 0 and not known:
            refusals.append(
                (lock_ttl, "Sign-ins to this account failed from many places; only devices it used before get in.")
            )
        if refusals:
            raise _locked(*max(refusals))

    async def failed(self, account: str, address: str) -> None:
        """Count a failed sign-in (a wrong password or second factor) of ``account`` from ``address``."""
        account_id, source = self._account_id(account), source_of(address)
        count_key, wait_key = self._pair_keys(account_id, source)
        sources_key, lock_key, _ = self._spray_keys(account_id)
        source_key = self._source_key(source)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(count_key)
            pipe.expire(count_key, PAIR_MEMORY_SECONDS)
            pipe.incr(source_key)
            pipe.expire(source_key, self.lockout_seconds)
            pipe.zadd(sources_key, {source: now})
            pipe.zremrangebyscore(sources_key, "-inf", now - SPRAY_WINDOW_SECONDS)
            pipe.zcard(sources_key)
            pipe.expire(sources_key, SPRAY_WINDOW_SECONDS)
            failures, _, _, _, _, _, sources, _ = await pipe.execute()
        delay = self.delay_after(int(failures))
        spraying = int(sources) >= self.spray_sources
        if delay or spraying:
            async with self.redis.pipeline(transaction=False) as pipe:
                if delay:
                    pipe.set(wait_key, "1", ex=delay)
                if spraying:
                    pipe.set(lock_key, "1", ex=self.lockout_seconds)
                await pipe.execute()

    async def succeeded(self, account: str, address: str) -> None:
        """A sign-in of ``account`` from ``address`` passed: that source's count goes, and the source is
        remembered as the account's own (it keeps getting in while the account is sprayed)."""
        account_id, source = self._account_id(account), source_of(address)
        _, _, known_key = self._spray_keys(account_id)
        now = time.time()
        with contextlib.suppress(RedisError):  # the counts then lapse with their windows
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(*self._pair_keys(account_id, source))
                pipe.zadd(known_key, {source: now})
                pipe.zremrangebyscore(known_key, "-inf", now - KNOWN_SOURCE_SECONDS)
                pipe.zremrangebyrank(known_key, 0, -KNOWN_SOURCE_LIMIT - 1)
                pipe.expire(known_key, KNOWN_SOURCE_SECONDS)
                await pipe.execute()
