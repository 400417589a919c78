"""Creating, finding, suspending and configuring tenants, and the per-process tenant cache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.names import check_name
from inopsio.pubsub import follow_channel
from inopsio.tenancy.models import Tenant
from inopsio.tenancy.schemas import (
    LOGO_URL_RULE,
    RESERVED_SLUGS,
    Branding,
    TenantCreate,
    TenantInfo,
    TenantSettings,
    TenantSettingsPatch,
    is_logo_url,
    validate_quota_names,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.plugins import PluginRegistry
    from inopsio.settings import Settings

log = logging.getLogger("inopsio.tenancy")


def tenant_info(row: Tenant) -> TenantInfo:
    return TenantInfo(
        id=row.id,
        slug=row.slug,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]
        settings=msgspec.convert(row.settings or {}, TenantSettings),
        quotas=dict(row.quotas or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        suspended_reason=row.suspended_reason,
    )


class TenantService:
    """Every change to a tenant goes through here, so caches everywhere hear about it."""

    def __init__(self, db: Database, redis: Redis, plugins: PluginRegistry, settings: Settings) -> None:
        self.db = db
        self.redis = redis
        self.plugins = plugins
        self.settings = settings
        self.channel = f"{settings.redis_namespace}:tenants:changed"
        self.directory = TenantDirectory(db, settings.tenant_cache_seconds, self.channel)

    def default_settings(self) -> TenantSettings:
        s = self.settings
        return TenantSettings(locale=s.default_locale, timezone=s.default_timezone, currency=s.default_currency)

    async def create(
        self,
        data: TenantCreate,
        *,
        demo_data: bool = False,
        then: Callable[[AsyncSession, TenantInfo], Awaitable[None]] | None = None,
    ) -> TenantInfo:
        """Create a tenant and let every enabled plugin seed it, all in one transaction.

        ``then(session, tenant)`` runs last in the same transaction (e.g. adding the owner) and
        runs before plugins' demo data, so sample data can refer to the owner.
        """
        if data.slug in RESERVED_SLUGS:
            raise Problem(
                422,
                "slug-reserved",
                f"The address {data.slug!r} is reserved; choose another.",
                errors=[{"pointer": "/slug", "detail": "reserved"}],
            )
        check_name(data.name, "/name")
        self._check_modules(data.settings.disabled_modules if data.settings else [])
        if data.settings:
            check_name(data.settings.display_name, "/settings/display_name")
            self._check_branding(data.settings.branding, "/settings/branding")
        tenant_id = new_id()
        tenant_settings = data.settings or self.default_settings()
        async with self.db.session(tenant_id) as session:
            result = await session.execute(
                insert(Tenant)
                .values(
                    id=tenant_id,
                    slug=data.slug,
                    name=data.name,
                    settings=msgspec.to_builtins(tenant_settings),
                    quotas={},
                )
                .on_conflict_do_nothing(index_elements=["slug"])
                .returning(Tenant)
            )
            row = result.scalar_one_or_none()
            if row is None:
                raise Problem(
                    409,
                    "slug-taken",
                    f"A tenant with the address {data.slug!r} already exists.",
                    errors=[{"pointer": "/slug", "detail": "taken"}],
                )
            info = tenant_info(row)
            disabled = info.settings.disabled_modules
            await self.plugins.call_async("on_tenant_created", disabled=disabled, tenant=info, session=session)
            if then is not None:
                await then(session, info)
            if demo_data:
                await self.plugins.call_async("seed_demo_data", disabled=disabled, tenant=info, session=session)
        # Caches may hold the slug as unknown (misses are cached too): the new tenant must be reachable at once.
        await self.announce_change(info.slug)
        log.info("tenant created", extra={"tenant": info.slug})
        return info

    def _check_modules(self, modules: list[str]) -> None:
        unknown = sorted(set(modules) - set(self.plugins.plugin_names()))
        if unknown:
            raise Problem(
                422,
                "unknown-module",
                f"Not installed, cannot be switched off: {', '.join(unknown)}.",
                errors=[{"pointer": "/settings/disabled_modules", "detail": "unknown module"}],
            )

    def _check_branding(self, branding: Branding, pointer: str) -> None:
        if branding.logo_url is not None and not is_logo_url(branding.logo_url):
            raise Problem(
                422,
                "invalid-settings",
                f"The logo address must be {LOGO_URL_RULE}.",
                errors=[{"pointer": f"{pointer}/logo_url", "detail": f"must be {LOGO_URL_RULE}"}],
            )

    async def get(self, tenant_id: UUID) -> TenantInfo:
        async with self.db.session(None) as session:
            row = await session.get(Tenant, tenant_id)
        if row is None:
            raise Problem(404, "tenant-not-found", "No such tenant.")
        return tenant_info(row)

    async def by_slug(self, slug: str) -> TenantInfo | None:
        async with self.db.session(None) as session:
            row = (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()
        return tenant_info(row) if row else None

    async def list(
        self, *, search: str | None = None, status: str | None = None, after: str | None = None, limit: int = 50
    ) -> tuple[list[TenantInfo], int]:
        """Tenants ordered by slug, keyset-paginated by ``after`` (the last slug seen), and the total."""
        query = select(Tenant)
        count = select(func.count()).select_from(Tenant)
        filters: list[ColumnElement[bool]] = []
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            filters.append(Tenant.slug.ilike(pattern) | Tenant.name.ilike(pattern))
        if status:
            filters.append(Tenant.status == status)
        for f in filters:
            query, count = query.where(f), count.where(f)
        if after:
            query = query.where(Tenant.slug > after)
        async with self.db.session(None) as session:
            rows = (await session.execute(query.order_by(Tenant.slug).limit(limit))).scalars().all()
            total = (await session.execute(count)).scalar_one()
        return [tenant_info(r) for r in rows], total

    async def _update(self, tenant_id: UUID, **values: Any) -> TenantInfo:
        async with self.db.session(None) as session:
            result = await session.execute(
                update(Tenant).where(Tenant.id == tenant_id).values(updated_at=utcnow(), **values).returning(Tenant)
            )
            row = result.scalar_one_or_none()
        if row is None:
            raise Problem(404, "tenant-not-found", "No such tenant.")
        info = tenant_info(row)
        await self.announce_change(info.slug)
        return info

    async def suspend(self, tenant_id: UUID, reason: str | None = None) -> TenantInfo:
        return await self._update(tenant_id, status="suspended", suspended_reason=reason)

    async def resume(self, tenant_id: UUID) -> TenantInfo:
        return await self._update(tenant_id, status="active", suspended_reason=None)

    async def update_settings(self, tenant_id: UUID, patch: TenantSettingsPatch) -> TenantInfo:
        # Only the branding given is checked: a value stored before the check was tightened does not
        # block changing the time zone (it is not shown meanwhile, see web.render).
        if not isinstance(patch.branding, msgspec.UnsetType):
            self._check_branding(patch.branding, "/branding")
        if isinstance(patch.display_name, str):
            check_name(patch.display_name, "/display_name")
        current = await self.get(tenant_id)
        merged = msgspec.to_builtins(current.settings)
        merged.update(msgspec.to_builtins(patch))
        try:
            new_settings = msgspec.convert(merged, TenantSettings)
        except msgspec.ValidationError as exc:
            raise Problem(422, "invalid-settings", str(exc)) from None
        self._check_modules(new_settings.disabled_modules)
        return await self._update(tenant_id, settings=msgspec.to_builtins(new_settings))

    async def set_quotas(
        self, tenant_id: UUID, overrides: dict[str, int | None], *, replace: bool = False
    ) -> TenantInfo:
        """Override quotas for one tenant; a name mapped to ``null`` means unlimited.

        Without ``replace``, the given overrides are merged into the existing ones.
        """
        try:
            validate_quota_names(overrides)
        except ValueError as exc:
            raise Problem(422, "unknown-quota", str(exc)) from None
        current = {} if replace else dict((await self.get(tenant_id)).quotas)
        current.update(overrides)
        return await self._update(tenant_id, quotas=current)

    async def clear_quota(self, tenant_id: UUID, name: str) -> TenantInfo:
        """Drop one override so the platform default applies again."""
        current = dict((await self.get(tenant_id)).quotas)
        current.pop(name, None)
        return await self._update(tenant_id, quotas=current)

    async def announce_change(self, slug: str) -> None:
        """Drop the tenant from this process's cache and tell every other process to do the same."""
        self.directory.invalidate(slug)
        try:
            await self.redis.publish(self.channel, slug)
        except Exception:  # Redis down: other processes catch up when their cache entry expires.
            log.warning(
                "could not announce tenant change for %s; caches expire in %ss",
                slug,
                self.settings.tenant_cache_seconds,
            )


class TenantDirectory:
    """A small per-process cache of tenants by slug, so resolving a tenant rarely costs a query.

    Entries live ``ttl`` seconds at most and are dropped at once when any process announces a
    change on Redis; unknown slugs are cached too, so a flood of bad hosts cannot flood the database.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, db: Database, ttl: float, channel: str) -> None:
        self.db = db
        self.ttl = ttl
        self.channel = channel
        self._entries: OrderedDict[str, tuple[float, TenantInfo | None]] = OrderedDict()
        self._slugs: dict[UUID, str] = {}
        self._lookups: dict[str, asyncio.Future[TenantInfo | None]] = {}

    async def get(self, slug: str) -> TenantInfo | None:
        now = time.monotonic()
        hit = self._entries.get(slug)
        if hit is not None and hit[0] > now:
            return hit[1]
        # Concurrent misses for one slug share a single lookup.
        pending = self._lookups.get(slug)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(Tenant.slug == slug))
            self._lookups[slug] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(slug, None))
        info = await asyncio.shield(pending)
        self._remember(slug, info, now)
        return info

    async def _lookup(self, condition: Any) -> TenantInfo | None:
        """One autocommit statement (``tenants`` has no row-level security): one round trip."""
        async with self.db.engine.connect() as connection:
            row = (await connection.execute(select(*Tenant.__table__.columns).where(condition))).one_or_none()
        return tenant_info(row) if row is not None else None  # type: ignore[arg-type]

    async def get_by_id(self, tenant_id: UUID) -> TenantInfo | None:
        """The tenant with this id (from a token's claim), through the same cache."""
        now = time.monotonic()
        slug = self._slugs.get(tenant_id)
        if slug is not None:
            hit = self._entries.get(slug)
            if hit is not None and hit[0] > now and hit[1] is not None and hit[1].id == tenant_id:
                return hit[1]
        info = await self._lookup(Tenant.id == tenant_id)
        if info is None:
            return None
        self._remember(info.slug, info, now)
        return info

    def _remember(self, slug: str, info: TenantInfo | None, now: float) -> None:
        self._entries[slug] = (now + self.ttl, info)
        self._entries.move_to_end(slug)
        if info is not None:
            self._slugs[info.id] = slug
        while len(self._entries) > self.MAX_ENTRIES:
            _, (_, dropped) = self._entries.popitem(last=False)
            if dropped is not None:
                self._slugs.pop(dropped.id, None)

    def invalidate(self, slug: str | None = None) -> None:
        if slug is None:
            self._entries.clear()
            self._slugs.clear()
        else:
            self._entries.pop(slug, None)

    async def listen(self, redis: Redis) -> None:
        """Follow change announcements until cancelled; reconnects when Redis comes back."""
        await follow_channel(redis, self.channel, self.invalidate, on_subscribed=self.invalidate, what="tenant change")
