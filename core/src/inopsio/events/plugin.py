"""The kernel's event feature: its tables, routes and permissions, through the plugin hooks."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from inopsio import hookimpl
from inopsio.db.base import utcnow
from inopsio.db.engine import switch_tenant
from inopsio.events.controllers import EventsController
from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.events.schemas import ANY_MEMBER, EventType
from inopsio.identity.audit import AuditRecorded
from inopsio.identity.rbac import Permission
from inopsio.notifications import NOTIFICATION_TYPE, Notification, for_its_recipient
from inopsio.settings import Settings
from inopsio.tenancy.models import Tenant

if TYPE_CHECKING:
    from inopsio.kernel import Kernel

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

    One transaction, switching the tenant setting before each tenant's deletes (row-level security).
    """
    kernel = ctx["kernel"]
    cutoff = utcnow() - dt.timedelta(days=kernel.settings.event_retention_days)
    deleted = 0
    async with kernel.db.transaction(None) as connection:
        tenant_ids = list((await connection.execute(select(Tenant.id))).scalars())
        for tenant_id in tenant_ids:
            await switch_tenant(connection, tenant_id)
            old = select(EventRecord.id).where(EventRecord.tenant_id == tenant_id, EventRecord.occurred_at < cutoff)
            await connection.execute(
                delete(Delivery).where(Delivery.tenant_id == tenant_id, Delivery.event_id.in_(old))
            )
            result = await connection.execute(
                delete(EventRecord).where(EventRecord.tenant_id == tenant_id, EventRecord.occurred_at < cutoff)
            )
            deleted += result.rowcount or 0
    return deleted


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
