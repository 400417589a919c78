"""``/api/v1/platform``: create, list, suspend and resume tenants, set quotas, read usage.

Only platform operators (a role outside any tenant) get in; every change is written to the
``inopsio.audit`` log with the operator's token name.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from inopsio.deps import KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit as tenant_audit
from inopsio.kernel import Kernel
from inopsio.platform.auth import operator_guard
from inopsio.tenancy.resolution import TENANCY_OPT
from inopsio.tenancy.schemas import QuotaOverrides, TenantCreate, TenantInfo, TenantSettingsPatch, TenantSuspend

audit = logging.getLogger("inopsio.audit")


class TenantPage(msgspec.Struct, kw_only=True):
    items: list[TenantInfo]
    total: int
    #: Pass as ``after`` to get the next page; absent on the last page.
    next_after: str | None = None


class QuotaView(msgspec.Struct, kw_only=True):
    #: What applies now: the override where there is one, else the platform default.
    limits: dict[str, int | None]
    overrides: dict[str, int | None]
    defaults: dict[str, int | None]


class DailyCounter(msgspec.Struct, kw_only=True):
    day: dt.date
    metric: str
    value: int


class UsageView(msgspec.Struct, kw_only=True):
    tenant_id: UUID
    since: dt.date
    until: dt.date
    daily: list[DailyCounter]
    gauges: dict[str, int]
    limits: dict[str, int | None]


async def _audit(request: Request[Any, Any, Any], action: str, tenant: TenantInfo, **details: Any) -> None:
    """Log the operator's action, and record it in the tenant's own audit log for its admins to see."""
    operator = request.scope.get("state", {}).get("operator")
    kernel: Kernel = request.app.state.kernel
    async with kernel.db.session(tenant.id) as session:
        await tenant_audit.record(
            session,
            tenant.id,
            action,
            actor_label=f"platform operator {operator}",
            ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", ""),
            **details,
        )
    audit.info(
        "platform %s",
        action,
        extra={
            "operator": operator,
            "action": action,
            "tenant": tenant.slug,
            "tenant_id": str(tenant.id),
            **details,
        },
    )


class PlatformController(Controller):
    path = "/api/v1/platform"
    guards = [operator_guard]
    opt = {TENANCY_OPT: "none"}
    tags = ["platform"]

    @post("/tenants", status_code=201)
    async def create_tenant(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[TenantCreate]
    ) -> TenantInfo:
        """Create a tenant; every enabled plugin seeds its defaults in the same transaction."""
        tenant = await kernel.tenants.create(data)
        await _audit(request, "tenant.created", tenant)
        return tenant

    @get("/tenants")
    async def list_tenants(
        self,
        kernel: KernelDep,
        search: Annotated[str | None, QueryParameter(max_length=200, description="Part of the slug or name")] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(active|suspended)$")] = None,
        after: Annotated[
            str | None, QueryParameter(max_length=63, description="Last slug of the previous page")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> TenantPage:
        # One row more than asked tells whether a next page exists, so a full last page has no next_after.
        items, total = await kernel.tenants.list(search=search, status=status, after=after, limit=limit + 1)
        next_after = items[limit - 1].slug if len(items) > limit else None
        return TenantPage(items=items[:limit], total=total, next_after=next_after)

    @get("/tenants/{tenant_id:uuid}")
    async def get_tenant(self, kernel: KernelDep, tenant_id: FromPath[UUID]) -> TenantInfo:
        return await kernel.tenants.get(tenant_id)

    @post("/tenants/{tenant_id:uuid}/suspend", status_code=200)
    async def suspend_tenant(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant_id: FromPath[UUID],
        data: JSONBody[TenantSuspend | None] = None,
    ) -> TenantInfo:
        """Refuse every request of the tenant with a 403 problem document; its data stays."""
        tenant = await kernel.tenants.suspend(tenant_id, data.reason if data else None)
        await _audit(request, "tenant.suspended", tenant, reason=tenant.suspended_reason)
        return tenant

    @post("/tenants/{tenant_id:uuid}/resume", status_code=200)
    async def resume_tenant(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant_id: FromPath[UUID]
    ) -> TenantInfo:
        tenant = await kernel.tenants.resume(tenant_id)
        await _audit(request, "tenant.resumed", tenant)
        return tenant

    @patch("/tenants/{tenant_id:uuid}/settings")
    async def update_settings(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant_id: FromPath[UUID],
        data: JSONBody[TenantSettingsPatch],
    ) -> TenantInfo:
        tenant = await kernel.tenants.update_settings(tenant_id, data)
        await _audit(request, "tenant.settings_changed", tenant, fields=sorted(msgspec.to_builtins(data)))
        return tenant

    @get("/tenants/{tenant_id:uuid}/quotas")
    async def get_quotas(self, kernel: KernelDep, tenant_id: FromPath[UUID]) -> QuotaView:
        tenant = await kernel.tenants.get(tenant_id)
        return self._quota_view(kernel, tenant)

    @put("/tenants/{tenant_id:uuid}/quotas")
    async def replace_quotas(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant_id: FromPath[UUID],
        data: JSONBody[QuotaOverrides],
    ) -> QuotaView:
        """Replace the tenant's overrides: quotas not named fall back to the platform default."""
        tenant = await kernel.tenants.set_quotas(tenant_id, data, replace=True)
        await _audit(request, "tenant.quotas_changed", tenant, overrides=data)
        return self._quota_view(kernel, tenant)

    @patch("/tenants/{tenant_id:uuid}/quotas")
    async def merge_quotas(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant_id: FromPath[UUID],
        data: JSONBody[QuotaOverrides],
    ) -> QuotaView:
        """Change some overrides, keep the others (``null`` means unlimited)."""
        tenant = await kernel.tenants.set_quotas(tenant_id, data)
        await _audit(request, "tenant.quotas_changed", tenant, overrides=data)
        return self._quota_view(kernel, tenant)

    @get("/tenants/{tenant_id:uuid}/usage")
    async def usage(
        self,
        kernel: KernelDep,
        tenant_id: FromPath[UUID],
        since: FromQuery[dt.date | None] = None,
        until: FromQuery[dt.date | None] = None,
    ) -> UsageView:
        """Daily usage counters (default: the last 30 days) and current gauges, beside the limits."""
        tenant = await kernel.tenants.get(tenant_id)
        until = until or dt.datetime.now(dt.UTC).date()
        since = since or until - dt.timedelta(days=29)
        if since > until:
            raise Problem(400, "invalid-range", "since must not be after until.")
        await kernel.quotas.flush()
        daily, gauges = await kernel.quotas.usage(tenant.id, since, until)
        return UsageView(
            tenant_id=tenant.id,
            since=since,
            until=until,
            daily=[DailyCounter(day=d.day, metric=d.metric, value=d.value) for d in daily],
            gauges={g.metric: g.value for g in gauges},
            limits=kernel.quotas.limits(tenant),
        )

    @staticmethod
    def _quota_view(kernel: Kernel, tenant: TenantInfo) -> QuotaView:
        return QuotaView(
            limits=kernel.quotas.limits(tenant),
            overrides=dict(tenant.quotas),
            defaults=msgspec.to_builtins(kernel.settings.quotas),
        )
