"""API keys for integrations: created scoped to some of the creator's permissions, shown once, stored
as a SHA-256 digest, revoked in every process within milliseconds.

Each process keeps a small cache of recently seen keys (by digest) so an API request rarely costs a
query; :class:`AuthenticationMiddleware` reads it. A revocation drops the key from this process's
cache at once and is announced on Redis so every other process drops it too; the cache's short
lifetime bounds the delay if an announcement is lost while Redis is away.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import select, update

from inopsio.crypto import digest
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import API_KEY_PREFIX, api_key_cache_key
from inopsio.identity.models import ApiKey
from inopsio.identity.principal import Principal
from inopsio.pubsub import follow_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from inopsio.db.engine import Database
    from inopsio.identity.rbac import Authorizer

log = logging.getLogger("inopsio.api_keys")

#: What a process caches per (tenant, key digest): (monotonic expiry, principal or ``None`` for a refused key).
CacheEntry = tuple[float, Principal | None]


def new_api_key() -> tuple[str, str]:
    """A fresh ``(prefix, key)``: the prefix finds the row, the whole key is the secret."""
    prefix = secrets.token_hex(8)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


class ApiKeyService:
    """Creating, listing and revoking a tenant's API keys, and this process's cache of keys in use."""

    def __init__(self, db: Database, redis: Redis, authorizer: Authorizer, namespace: str) -> None:
        self.db = db
        self.redis = redis
        self.authorizer = authorizer
        self.channel = f"{namespace}:api_keys:revoked"
        #: Shared by every route's AuthenticationMiddleware (Litestar builds one per route).
        self.cache: dict[str, CacheEntry] = {}

    async def create(
        self,
        tenant_id: UUID,
        user_id: UUID,
        name: str,
        permissions: list[str],
        expires_at: dt.datetime | None,
        **client: str,
    ) -> tuple[ApiKey, str]:
        """Create a key for ``user_id``; it may only carry permissions the user has now."""
        requested = sorted(set(permissions))
        unknown = [p for p in requested if p not in self.authorizer.permissions]
        if unknown:
            raise Problem(
                422,
                "unknown-permission",
                f"Not a declared permission: {', '.join(unknown)}.",
                errors=[{"pointer": "/permissions", "detail": f"unknown: {p}"} for p in unknown],
                permissions=unknown,
            )
        lacking = [p for p in requested if not self.authorizer.allowed(user_id, tenant_id, p)]
        if lacking:
            raise Problem(
                422,
                "permission-not-held",
                f"You cannot give a key permissions you do not have: {', '.join(lacking)}.",
                errors=[{"pointer": "/permissions", "detail": f"not held: {p}"} for p in lacking],
                permissions=lacking,
            )
        if expires_at is not None and expires_at <= utcnow():
            raise Problem(
                422,
                "expiry-in-past",
                "expires_at must be in the future.",
                errors=[{"pointer": "/expires_at", "detail": "in the past"}],
            )
        prefix, key = new_api_key()
        async with self.db.session(tenant_id) as session:
            row = ApiKey(
                name=name,
                prefix=prefix,
                key_hash=digest(key),
                permissions=requested,
                created_by=user_id,
                expires_at=expires_at,
            )
            session.add(row)
            await session.flush()
            await audit.record(
                session,
                tenant_id,
                "api_key.created",
                actor_id=user_id,
                api_key_id=str(row.id),
                name=name,
                prefix=prefix,
                permissions=requested,
                expires_at=expires_at.isoformat() if expires_at else None,
                **client,
            )
        return row, key

    async def list_keys(self, tenant_id: UUID) -> list[ApiKey]:
        async with self.db.session(tenant_id) as session:
            rows = await session.execute(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))
            return list(rows.scalars())

    async def revoke(self, tenant_id: UUID, key_id: UUID, *, actor_id: UUID | None, **client: str) -> None:
        """Revoke a key (again is a no-op); 404 if the tenant has no such key."""
        async with self.db.session(tenant_id) as session:
            key = (await session.execute(select(ApiKey).where(ApiKey.id == key_id))).scalar_one_or_none()
            if key is None:
                raise Problem(404, "not-found", "No such API key.")
            if key.revoked_at is not None:
                return
            await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
            await audit.record(
                session,
                tenant_id,
                "api_key.revoked",
                actor_id=actor_id,
                api_key_id=str(key.id),
                name=key.name,
                prefix=key.prefix,
                **client,
            )
            cache_key = api_key_cache_key(tenant_id, key.key_hash)
        await self.announce_revoked(cache_key)

    async def announce_revoked(self, cache_key: str) -> None:
        """After the revocation commits: forget the key here and tell every other process."""
        self.cache.pop(cache_key, None)
        try:
            await self.redis.publish(self.channel, cache_key)
        except Exception:
            log.warning("could not announce an API key revocation; other processes drop it within their cache TTL")

    def _forget(self, cache_key: str) -> None:
        self.cache.pop(cache_key, None)

    async def follow_revocations(self) -> None:
        """Drop revoked keys from this process's cache as they are announced, until cancelled."""
        await follow_channel(
            self.redis,
            self.channel,
            self._forget,
            # A revocation may have been missed while we were not listening.
            on_subscribed=self.cache.clear,
            what="API key revocation",
        )
