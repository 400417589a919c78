"""API keys for integrations: created scoped to some of the creator's permissions, shown once, stored
as a SHA-256 digest, revoked in every process within milliseconds, handed to another member by an admin.

A key acts for its owner (its creator until handed over): at every request it may do what it lists
*and* its owner may do at that moment (:meth:`Authorizer.allows`), and nothing once the owner has
left the tenant. :meth:`ApiKeyService.list_keys` shows each key's owner, status and those effective
permissions.

Each process keeps a small cache of recently seen keys (by digest) so an API request rarely costs a
query; :class:`AuthenticationMiddleware` reads it. A revocation or a hand-over drops the key from
this process's cache at once and is announced on Redis so every other process drops it too; the
cache's short lifetime bounds the delay if an announcement is lost while Redis is away.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from sqlalchemy import select, update

from inopsio.crypto import digest
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import API_KEY_PREFIX, api_key_cache_key
from inopsio.identity.models import ApiKey, Membership, User
from inopsio.identity.principal import Principal
from inopsio.pubsub import follow_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from inopsio.db.engine import Database
    from inopsio.identity.rbac import Authorizer

log = logging.getLogger("inopsio.api_keys")

#: What a process caches per (tenant, key digest): (monotonic expiry, principal or ``None`` for a refused key).
CacheEntry = tuple[float, Principal | None]

#: ``owner_removed``: the owner left the tenant (or their account was deleted); the key does nothing
#: until an admin hands it to a member or revokes it.
ApiKeyStatus = Literal["active", "revoked", "expired", "owner_removed"]


@dataclass(frozen=True)
class ApiKeyView:
    """A key as the key list shows it: who owns it, whether it works, and what it can do now."""

    key: ApiKey
    #: ``None`` once the owner's account was deleted.
    owner: User | None
    status: ApiKeyStatus
    #: The key's permissions that its owner holds now; empty unless the key is active.
    effective_permissions: list[str]


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

    async def list_keys(self, tenant_id: UUID, *, owned_by: UUID | None = None) -> list[ApiKeyView]:
        """The tenant's keys (or one member's), newest first, each with its owner and status now."""
        query = (
            select(ApiKey, User)
            .outerjoin(User, User.id == ApiKey.created_by)
            .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
        if owned_by is not None:
            query = query.where(ApiKey.created_by == owned_by)
        async with self.db.session(tenant_id) as session:
            rows = (await session.execute(query)).all()
        now = utcnow()
        return [self.view(tenant_id, key, owner, now) for key, owner in rows]

    def view(self, tenant_id: UUID, key: ApiKey, owner: User | None, now: dt.datetime) -> ApiKeyView:
        status = self.status_of(tenant_id, key, now)
        effective: list[str] = []
        if status == "active" and key.created_by is not None:
            # The rule the guard applies to every request (Authorizer.allows), from the same cache.
            effective = [p for p in key.permissions if self.authorizer.allowed(key.created_by, tenant_id, p)]
        return ApiKeyView(key=key, owner=owner, status=status, effective_permissions=effective)

    def status_of(self, tenant_id: UUID, key: ApiKey, now: dt.datetime) -> ApiKeyStatus:
        if key.revoked_at is not None:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= now:
            return "expired"
        if key.created_by is None or self.authorizer.role_of(key.created_by, tenant_id) is None:
            return "owner_removed"
        return "active"

    async def hand_over(
        self, tenant_id: UUID, key_id: UUID, user_id: UUID, *, actor_id: UUID, **client: str
    ) -> ApiKeyView:
        """Make ``user_id`` (a current member) the key's owner; its powers follow the new owner's.

        404 for an unknown key and for anyone who is not a member of this tenant (a member of
        another tenant looks exactly like nobody). The actor must hold every permission the key
        lists: otherwise an admin demoted after making a key could hand it to the owner and have
        back, through it, what they lost. Handing a key to its owner changes nothing.
        """
        async with self.db.session(tenant_id) as session:
            key = (
                await session.execute(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
            ).scalar_one_or_none()
            if key is None:
                raise Problem(404, "not-found", "No such API key.")
            member = (
                await session.execute(
                    select(User).join(Membership, Membership.user_id == User.id).where(Membership.user_id == user_id)
                )
            ).scalar_one_or_none()
            if member is None or self.authorizer.role_of(user_id, tenant_id) is None:
                raise Problem(
                    404,
                    "not-found",
                    "No such member: a key can only be handed to a member of this tenant.",
                    errors=[{"pointer": "/user_id", "detail": "not a member"}],
                )
            now = utcnow()
            if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
                raise Problem(
                    409, "api-key-inactive", "This key is revoked or expired: create a new one for the member instead."
                )
            lacking = [p for p in key.permissions if not self.authorizer.allowed(actor_id, tenant_id, p)]
            if lacking:
                raise Problem(
                    403,
                    "permission-not-held",
                    f"You cannot hand over a key with permissions you do not have: {', '.join(lacking)}.",
                    permissions=lacking,
                )
            previous = key.created_by
            if previous == user_id:
                return self.view(tenant_id, key, member, now)
            key.created_by = user_id
            await audit.record(
                session,
                tenant_id,
                "api_key.owner_changed",
                actor_id=actor_id,
                api_key_id=str(key.id),
                name=key.name,
                prefix=key.prefix,
                previous_owner=str(previous) if previous else None,
                new_owner=str(user_id),
                **client,
            )
            cache_key = api_key_cache_key(tenant_id, key.key_hash)
            handed = self.view(tenant_id, key, member, now)
        # Processes that cached the key still hold a principal acting for the previous owner.
        await self.announce_changed(cache_key)
        return handed

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
        await self.announce_changed(cache_key)

    async def announce_changed(self, cache_key: str) -> None:
        """After a revocation or hand-over commits: forget the key here and tell every other process."""
        self.cache.pop(cache_key, None)
        try:
            await self.redis.publish(self.channel, cache_key)
        except Exception:
            log.warning("could not announce an API key change; other processes drop it within their cache TTL")

    def _forget(self, cache_key: str) -> None:
        self.cache.pop(cache_key, None)

    async def follow_revocations(self) -> None:
        """Drop revoked and handed-over keys from this process's cache as they are announced, until cancelled."""
        await follow_channel(
            self.redis,
            self.channel,
            self._forget,
            # A change may have been missed while we were not listening.
            on_subscribed=self.cache.clear,
            what="API key change",
        )
