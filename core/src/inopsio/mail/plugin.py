"""The kernel's mail feature, registered through the plugin hooks: the outbox table, the event that
announces a committed message, its handler, and the job that sends it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from inopsio import hookimpl
from inopsio.events.schemas import DomainEvent, EventType
from inopsio.mail.models import OutgoingMail
from inopsio.mail.service import QUEUED_EVENT, SEND_JOB, MailQueued, RenderedMail

if TYPE_CHECKING:
    from inopsio.kernel import Kernel

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


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    # Mail committed by the last requests reaches the queue before Redis is closed (the dispatchers
    # would queue any that does not, a little later).
    await kernel.mail.settle()
