"""Brute-force protection for sign-in, shared by every process through Redis.

Failures are counted per account and per client address over the lockout window. After a few,
each further attempt is answered more slowly; at the threshold the account (or address) is locked
until the window passes, and the answer says how long is left. A success clears the account's count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from inopsio.errors import Problem

if TYPE_CHECKING:
    from redis.asyncio import Redis

FREE_FAILURES = 3
MAX_DELAY_SECONDS = 4.0


class LoginThrottle:
    def __init__(self, redis: Redis, namespace: str, max_failures: int, lockout_seconds: int) -> None:
        self.redis = redis
        self.ns = namespace
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds

    def _keys(self, account: str, address: str) -> tuple[str, str]:
        # Hash the address book so Redis holds no plain e-mail addresses.
        account_id = hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]
        return f"{self.ns}:login-fail:acct:{account_id}", f"{self.ns}:login-fail:ip:{address}"

    async def before_attempt(self, account: str, address: str) -> None:
        """Refuse (429) a locked account or address; otherwise wait as long as recent failures ask."""
        keys = self._keys(account, address)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                acct, acct_ttl, ip, ip_ttl = await pipe.execute()
        except RedisError:
            # Without its counts the throttle cannot stop password guessing: refuse, and say so (not a 500).
            raise Problem(
                503,
                "login-unavailable",
                "Signing in is unavailable for a moment. Try again shortly.",
                headers={"Retry-After": "30"},
            ) from None
        failures = max(int(acct or 0), int(ip or 0))
        if failures >= self.max_failures:
            ttl = max(int(acct_ttl if int(acct or 0) >= self.max_failures else ip_ttl), 1)
            minutes, seconds = divmod(ttl, 60)
            raise Problem(
                429,
                "login-locked",
                f"Too many failed sign-ins. Try again in {minutes} min {seconds} s, or reset your password.",
                headers={"Retry-After": str(ttl)},
                retry_after=ttl,
            )
        if failures > FREE_FAILURES:
            await asyncio.sleep(min(MAX_DELAY_SECONDS, 0.25 * 2 ** (failures - FREE_FAILURES - 1)))

    async def failed(self, account: str, address: str) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in self._keys(account, address):
                pipe.incr(key)
                pipe.expire(key, self.lockout_seconds)
            acct, _, ip, _ = await pipe.execute()
        return max(int(acct), int(ip))

    async def succeeded(self, account: str) -> None:
        with contextlib.suppress(RedisError):  # the count then lapses with its window
            await self.redis.delete(self._keys(account, "-")[0])
