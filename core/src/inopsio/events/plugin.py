"""The kernel's event feature: its tables, routes and permissions, through the plugin hooks."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, select

from inopsio import hookimpl
from inopsio.db.base import utcnow
from inopsio.events.controllers import EventsController
from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.events.schemas import ANY_MEMBER, EventType
from inopsio.identity.audit import AuditRecorded
from inopsio.identity.rbac import Permission
from inopsio.jobs.tenants import for_each_tenant
from inopsio.notifications import NOTIFICATION_TYPE, Notification, for_its_recipient
from inopsio.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import CursorResult
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

#: Declared by the identity feature (``GET /api/v1/audit``).
AUDIT_READ_PERMISSION = "kernel.audit.read"


@hookimpl
def register_models(register: Any) -> None:
    register(EventRecord)
    register(PendingEvent)
    register(Delivery)


@hookimpl
def register_event_types(register: Any) -> None:
    register(
        EventType(
            name="kernel.audit.recorded",
            description="A security-relevant action was written to the tenant's audit log",
            # Whoever may not read the audit log may not read its entries in the feed either.
            permission=AUDIT_READ_PERMISSION,
            payload=AuditRecorded,
        )
    )
    register(
        EventType(
            name=NOTIFICATION_TYPE,
            description="An in-app alert for one user (recipient_id) or every member of the tenant",
            permission=ANY_MEMBER,
            payload=Notification,
            visible=for_its_recipient,
        )
    )


@hookimpl
def register_routes(register: Any) -> None:
    register(EventsController)


@hookimpl
def register_permissions(register: Any) -> None:
    register(
        Permission(
            name="kernel.events.read",
            description="Read the tenant's activity feed",
            roles=("admin", "manager", "member"),
        )
    )
    register(
        Permission(name="kernel.events.admin", description="See and replay failed event deliveries", roles=("admin",))
    )


async def apply_retention(ctx: dict[str, Any]) -> int:
    """Delete events (and their delivery records) older than ``event_retention_days``, every tenant.

    A platform job that walks the tenants itself rather than a per-tenant scheduled one: retention
    goes on for suspended tenants too. Each tenant's deletes are one transaction of their own, so a
    tenant with years of events neither holds locks nor a snapshot open for everyone else, and a
    failure rolls back that tenant only (the job then fails, and the next day's run catches up).
    """
    kernel = ctx["kernel"]
    cutoff = utcnow() - dt.timedelta(days=kernel.settings.event_retention_days)

    async def delete_old_events(tenant: TenantInfo, session: AsyncSession) -> int:
        old = select(EventRecord.id).where(EventRecord.tenant_id == tenant.id, EventRecord.occurred_at < cutoff)
        await session.execute(
            delete(Delivery).where(Delivery.tenant_id == tenant.id, Delivery.event_id.in_(old)),
            execution_options={"synchronize_session": False},
        )
        # A DELETE's result is a cursor result (it has a row count), whatever execute() is typed to return.
        result = cast(
            "CursorResult[Any]",
            await session.execute(
                delete(EventRecord).where(EventRecord.tenant_id == tenant.id, EventRecord.occurred_at < cutoff),
                execution_options={"synchronize_session": False},
            ),
        )
        return int(result.rowcount or 0)

    deleted = await for_each_tenant(kernel, delete_old_events, include_suspended=True)
    return sum(deleted.values())


@hookimpl
def register_jobs(register: Any, settings: Settings) -> None:
    register(
        apply_retention,
        name="kernel.event_retention",
        max_tries=1,
        timeout=3600,
        cron={"hour": {3}, "minute": {17}, "second": 0},
    )


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    # Events committed by the last requests reach their channel before Redis is closed (the
    # dispatchers would publish any that do not, a little later).
    await kernel.events.settle()
