"""The quota service: check a tenant's limits and count its usage.

Rates and daily limits are counted in Redis, shared by every process; daily totals are also
queued in Redis and flushed into ``tenant_usage_daily`` every few seconds. Requests are counted in
each process and sent to Redis in batches (:mod:`inopsio.quotas.counter`), so the hot path costs
no round trip at all while a counter is far from its limit, and no database write. Gauges (storage,
users) live in PostgreSQL and are changed atomically against their limit inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, NoReturn

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from inopsio.db.engine import switch_tenant
from inopsio.errors import Problem
from inopsio.quotas.counter import RateCounter
from inopsio.quotas.models import DailyUsage, UsageGauge
from inopsio.tenancy.models import Tenant

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.settings import QuotaLimits
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.quotas")

#: The daily metric each per-day quota counts.
DAILY_QUOTA_METRICS = {
    "workflow_runs_per_day": "workflow_runs",
    "security_events_per_day": "security_events",
}
GAUGE_QUOTAS = {"storage_bytes": 413, "users": 429}


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class QuotaService:
    def __init__(self, db: Database, redis: Redis, defaults: QuotaLimits, namespace: str = "inopsio") -> None:
        self.db = db
        self.redis = redis
        self.defaults = defaults
        self.ns = namespace
        self.pending_key = f"{namespace}:usage:pending"
        self.flushing_prefix = f"{namespace}:usage:flushing:"
        #: This process's request counts, sent to Redis in batches.
        self.counter = RateCounter(redis)

    def limit(self, tenant: TenantInfo, quota: str) -> int | None:
        """The tenant's limit for ``quota``: its override if it has one, else the platform default."""
        if quota in tenant.quotas:
            return tenant.quotas[quota]
        default: int | None = getattr(self.defaults, quota)
        return default

    def limits(self, tenant: TenantInfo) -> dict[str, int | None]:
        return {name: self.limit(tenant, name) for name in self.defaults.__struct_fields__}

    async def count_request(self, tenant: TenantInfo, *, principal: str | None = None) -> None:
        """Count one API call against the tenant's and the caller's per-minute limits (429 when spent).

        Counted in this process and shared through Redis in batches (:mod:`inopsio.quotas.counter`):
        no Redis round trip while a counter is below half its limit. Without Redis the request is
        let through and its count kept until Redis is back.
        """
        now = time.time()
        minute = int(now // 60)
        counter = self.counter
        counter.add_daily(self.pending_key, f"{tenant.id}|{_today().isoformat()}|api_calls")
        limit = self.limit(tenant, "api_calls_per_minute")
        count = await counter.hit(f"{self.ns}:rate:{tenant.id}:{minute}", limit)
        if limit is not None and count > limit:
            self._refuse("api_calls_per_minute", limit, "This tenant has used its {limit} API calls this minute", now)
        if principal is not None:
            limit = self.limit(tenant, "requests_per_minute_per_user")
            count = await counter.hit(f"{self.ns}:rate:{tenant.id}:{principal}:{minute}", limit)
            if limit is not None and count > limit:
                self._refuse("requests_per_minute_per_user", limit, "You have made {limit} requests this minute", now)

    @staticmethod
    def _refuse(quota: str, limit: int, message: str, now: float) -> NoReturn:
        retry_after = max(1, int(60 - now % 60))
        raise Problem(
            429,
            "quota-exceeded" if quota == "api_calls_per_minute" else "rate-limited",
            message.format(limit=limit) + f"; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            quota=quota,
            limit=limit,
        )

    async def consume_daily(self, tenant: TenantInfo, quota: str, amount: int = 1) -> int:
        """Take ``amount`` from a per-day quota (``workflow_runs_per_day``, ...); 429 if it would exceed.

        Returns the day's count after this use. Nothing is counted when the quota refuses.
        """
        metric = DAILY_QUOTA_METRICS[quota]
        limit = self.limit(tenant, quota)
        day = _today().isoformat()
        key = f"{self.ns}:daily:{tenant.id}:{metric}:{day}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, 2 * 86400)
            used, _ = await pipe.execute()
        if limit is not None and used > limit:
            await self.redis.decrby(key, amount)
            raise Problem(
                429,
                "quota-exceeded",
                f"This tenant has reached its limit of {limit} {metric.replace('_', ' ')} today.",
                quota=quota,
                limit=limit,
            )
        await self.redis.hincrby(self.pending_key, f"{tenant.id}|{day}|{metric}", amount)  # type: ignore[misc]
        return int(used)

    async def count(self, tenant_id: UUID, metric: str, amount: int = 1) -> None:
        """Add to a daily usage counter that has no limit (plugins' own metrics)."""
        field = f"{tenant_id}|{_today().isoformat()}|{metric}"
        await self.redis.hincrby(self.pending_key, field, amount)  # type: ignore[misc]

    def check_upload(self, tenant: TenantInfo, size: int) -> None:
        """Refuse (413) an upload larger than the tenant's ``upload_bytes`` quota."""
        limit = self.limit(tenant, "upload_bytes")
        if limit is not None and size > limit:
            raise Problem(
                413,
                "quota-exceeded",
                f"Uploads are limited to {limit} bytes for this tenant.",
                quota="upload_bytes",
                limit=limit,
            )

    async def change_gauge(self, session: AsyncSession, tenant: TenantInfo, quota: str, delta: int) -> int:
        """Add ``delta`` to a gauge quota (``storage_bytes``, ``users``) inside ``session``'s transaction.

        Raises 413 (storage) or 429 (users) when the new value would exceed the limit; a negative
        ``delta`` always succeeds. Returns the new value.
        """
        limit = self.limit(tenant, quota)
        upsert = insert(UsageGauge).values(tenant_id=tenant.id, metric=quota, value=max(delta, 0))
        stmt = upsert.on_conflict_do_update(
            index_elements=["tenant_id", "metric"],
            set_={"value": UsageGauge.value + delta},
            where=None if (limit is None or delta <= 0) else (UsageGauge.value + delta <= limit),
        ).returning(UsageGauge.value)
        # A single step larger than the whole limit can never fit; no need to ask the database.
        fits = limit is None or delta <= limit
        value = (await session.execute(stmt)).scalar_one_or_none() if fits else None
        if value is None:
            status = GAUGE_QUOTAS[quota]
            raise Problem(
                status,
                "quota-exceeded",
                f"This would exceed the tenant's {quota.replace('_', ' ')} quota of {limit}.",
                quota=quota,
                limit=limit,
            )
        return int(value)

    async def flush(self) -> int:
        """Move queued daily counts from Redis into PostgreSQL; returns how many counters moved.

        This process's own unsent counts go to Redis first, so they are among them.
        """
        await self.counter.flush()
        moved = 0
        for key in await self._claim_batches():
            raw = await self.redis.hgetall(key)  # type: ignore[misc]
            per_tenant: dict[str, list[tuple[dt.date, str, int]]] = defaultdict(list)
            for raw_field, raw_value in raw.items():
                field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
                tenant_key, day_text, metric_name = field.split("|", 2)
                per_tenant[tenant_key].append((dt.date.fromisoformat(day_text), metric_name, int(raw_value)))
            moved += await self._store_daily(per_tenant)
            await self.redis.delete(key)
        return moved

    async def _store_daily(self, per_tenant: dict[str, list[tuple[dt.date, str, int]]]) -> int:
        """Add the counts to ``tenant_usage_daily`` in one transaction, switching the tenant setting
        before each tenant's single multi-row upsert (the table is behind row-level security).

        One transaction for all tenants, not ``for_each_tenant``: the batch is deleted from Redis only
        after this commits, and a retried batch must not add the counts of tenants already stored."""
        if not per_tenant:
            return 0
        async with self.db.transaction(None) as connection:
            known = set(
                (
                    await connection.execute(select(Tenant.id).where(Tenant.id.in_([uuid.UUID(t) for t in per_tenant])))
                ).scalars()
            )
            moved = 0
            for tenant_key, rows in per_tenant.items():
                tenant_id = uuid.UUID(tenant_key)
                if tenant_id not in known:  # the tenant was deleted: its counts have nowhere to go
                    log.warning("dropping usage counts of unknown tenant %s", tenant_id)
                    continue
                await switch_tenant(connection, tenant_id)
                stmt = insert(DailyUsage).values(
                    [
                        {"tenant_id": tenant_id, "day": day, "metric": metric, "value": value}
                        for day, metric, value in rows
                    ]
                )
                await connection.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["tenant_id", "day", "metric"],
                        set_={"value": DailyUsage.value + stmt.excluded.value},
                    )
                )
                moved += len(rows)
        return moved

    async def _claim_batches(self) -> list[str]:
        claimed: list[str] = []
        now = int(time.time())
        batch = f"{self.flushing_prefix}{now}:{uuid.uuid4().hex}"
        try:
            await self.redis.rename(self.pending_key, batch)
            claimed.append(batch)
        except Exception as exc:  # ResponseError "no such key": nothing queued
            if "no such key" not in str(exc).lower():
                raise
        # Batches claimed by a process that died before finishing (older than five minutes).
        async for key in self.redis.scan_iter(match=self.flushing_prefix + "*", count=100):
            name = key.decode() if isinstance(key, bytes) else key
            stamp = int(name[len(self.flushing_prefix) :].split(":", 1)[0])
            if now - stamp > 300 and name not in claimed:
                claimed.append(name)
        return claimed

    async def usage(self, tenant_id: UUID, since: dt.date, until: dt.date) -> tuple[list[DailyUsage], list[UsageGauge]]:
        """Daily counters between two days (inclusive) and the current gauges of one tenant."""
        async with self.db.session(tenant_id) as session:
            daily = (
                (
                    await session.execute(
                        select(DailyUsage)
                        .where(DailyUsage.tenant_id == tenant_id, DailyUsage.day >= since, DailyUsage.day <= until)
                        .order_by(DailyUsage.day, DailyUsage.metric)
                    )
                )
                .scalars()
                .all()
            )
            gauges = (
                (
                    await session.execute(
                        select(UsageGauge).where(UsageGauge.tenant_id == tenant_id).order_by(UsageGauge.metric)
                    )
                )
                .scalars()
                .all()
            )
        return list(daily), list(gauges)
