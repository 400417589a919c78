"""The kernel's mail feature, registered through the plugin hooks: the outbox table, the event that
announces a committed message, its handler, and the job that sends it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from sqlalchemy import delete

from inopsio import hookimpl
from inopsio.db.base import utcnow
from inopsio.events.schemas import DomainEvent, EventType
from inopsio.jobs.tenants import for_each_tenant
from inopsio.mail.models import OutgoingMail
from inopsio.mail.service import QUEUED_EVENT, SEND_JOB, MailQueued, RenderedMail

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

#: Who sees ``kernel.mail.queued`` in the feed: the admins who see failed deliveries (it only names a row).
QUEUED_PERMISSION = "kernel.events.admin"


async def send_mail(ctx: dict[str, Any], *, mail_id: str | None = None, **fields: Any) -> None:
    """Send an outbox message (``mail_id``), or a message outside any tenant that the job carries itself."""
    mail = ctx["kernel"].mail
    if mail_id is not None:
        await mail.deliver_queued(ctx["tenant_id"], UUID(mail_id))
    else:
        await mail.deliver(RenderedMail(**fields), ctx["job_id"])


async def enqueue_delivery(event: DomainEvent, ctx: dict[str, Any]) -> None:
    # Runs only for committed events. The queueing process has usually queued the job already, under
    # the same id: this covers a process that died between its commit and that step.
    await ctx["kernel"].mail.enqueue_delivery(event.tenant_id, UUID(event.data["mail_id"]))


async def apply_retention(ctx: dict[str, Any]) -> int:
    """Delete sent and refused messages (bodies, attachments) older than ``event_retention_days``,
    every tenant, suspended ones too: the outbox is a queue, not an archive."""
    kernel = ctx["kernel"]
    cutoff = utcnow() - dt.timedelta(days=kernel.settings.event_retention_days)

    async def delete_old_mail(tenant: TenantInfo, session: AsyncSession) -> int:
        result = cast(
            "CursorResult[Any]",
            await session.execute(
                delete(OutgoingMail).where(
                    OutgoingMail.tenant_id == tenant.id,
                    OutgoingMail.status.in_(("sent", "failed")),
                    OutgoingMail.created_at < cutoff,
                ),
                execution_options={"synchronize_session": False},
            ),
        )
        return int(result.rowcount or 0)

    deleted = await for_each_tenant(kernel, delete_old_mail, include_suspended=True)
    return sum(deleted.values())


@hookimpl
def register_models(register: Any) -> None:
    register(OutgoingMail)


@hookimpl
def register_event_types(register: Any) -> None:
    register(
        EventType(
            name=QUEUED_EVENT,
            description="A message was written to the tenant's mail outbox (its id and template, never its content)",
            permission=QUEUED_PERMISSION,
            payload=MailQueued,
        )
    )


@hookimpl
def register_event_handlers(register: Any) -> None:
    register(QUEUED_EVENT, enqueue_delivery, name="kernel.mail.deliver")


@hookimpl
def register_jobs(register: Any) -> None:
    register(send_mail, name=SEND_JOB, max_tries=5, timeout=60, retry_delay=30)
    register(
        apply_retention,
        name="kernel.mail_retention",
        max_tries=1,
        timeout=3600,
        cron={"hour": {3}, "minute": {27}, "second": 0},
    )


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    # Mail committed by the last requests reaches the queue before Redis is closed (the dispatchers
    # would queue any that does not, a little later).
    await kernel.mail.settle()
