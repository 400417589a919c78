"""Ended sessions, known to every process at once, so checking a request costs no round trip.

An access token lives a few minutes and carries its session id; ending a session (sign-out, an
admin's revoke, a password change) must stop its tokens before they expire. The ended session ids
are kept in a Redis sorted set scored by when the mark can go (the tokens' lifetime), announced on a
pub/sub channel, and held by each process in memory: the process that ends a session knows at once,
the others within the channel's delivery time (milliseconds). A process that (re)subscribes reads
the whole set again, so nothing announced while it was not listening is missed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import update

from inopsio.db.base import utcnow
from inopsio.identity.models import AuthSession
from inopsio.pubsub import follow_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession


async def end_sessions_of(
    session: AsyncSession, user_id: UUID, reason: str, *, keep: UUID | None = None
) -> list[tuple[UUID, UUID]]:
    """End every open session of a user in every tenant, web and API (their refresh tokens with
    them), but ``keep``, in the caller's transaction. Returns ``(session id, tenant id)`` of each:
    announce them with :meth:`SessionRevocations.announce` once the transaction has committed."""
    query = (
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(AuthSession.id, AuthSession.tenant_id)
    )
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    return [(row.id, row.tenant_id) for row in await session.execute(query)]


class SessionRevocations:
    """See the module doc; ``kernel.identity.revocations``."""

    def __init__(self, redis: Redis, namespace: str, keep_seconds: int) -> None:
        self.redis = redis
        self.key = f"{namespace}:revoked-sessions"
        self.channel = f"{namespace}:revoked-sessions"
        self.keep_seconds = keep_seconds
        #: Session id -> when the mark can be forgotten (epoch seconds).
        self._ended: dict[UUID, float] = {}
        self._pruned_at = time.time()

    def is_revoked(self, session_id: UUID) -> bool:
        until = self._ended.get(session_id)
        return until is not None and until > time.time()

    async def announce(self, session_ids: list[UUID]) -> None:
        """Mark sessions ended, here at once and in every process through Redis."""
        if not session_ids:
            return
        now = time.time()
        until = now + self.keep_seconds
        for sid in session_ids:
            self._ended[sid] = until
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {str(sid): until for sid in session_ids})
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.expire(self.key, self.keep_seconds + 60)
            pipe.publish(self.channel, " ".join(f"{sid}:{until:.0f}" for sid in session_ids))
            await pipe.execute()

    def _heard(self, text: str) -> None:
        for item in text.split():
            sid, _, until = item.partition(":")
            self._ended[UUID(sid)] = float(until or time.time() + self.keep_seconds)

    async def reload(self) -> None:
        """Read every mark still in force (after each (re)subscription to the channel)."""
        now = time.time()
        marks = await self.redis.zrangebyscore(self.key, now, "+inf", withscores=True)
        for raw, until in marks:
            self._ended[UUID(raw.decode() if isinstance(raw, bytes) else str(raw))] = float(until)

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        for sid in [s for s, until in self._ended.items() if until <= now]:
            del self._ended[sid]

    async def follow(self) -> None:
        """Keep this process's marks current until cancelled (a kernel background task)."""
        await follow_channel(
            self.redis,
            self.channel,
            self._heard,
            on_subscribed=self.reload,
            what="session revocation",
            on_idle=self._prune,
        )
