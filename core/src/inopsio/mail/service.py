"""The mail service: ``await kernel.mail.queue(session, tenant, to=..., template="erp/invoice", context={...})``.

A message is rendered when it is queued (so a template error surfaces to the caller) from three
templates: ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` (autoescaped). The kernel's
own live in ``inopsio/templates/mail`` and are named bare (``reset_password``); a plugin's come from
its ``register_mail_templates`` hook and are named ``<plugin>/<name>``.

Queueing writes the message (with its attachments) to the tenant's ``mail_outbox`` in the caller's
transaction and publishes ``kernel.mail.queued`` (the row's id only) with it: a transaction that
rolls back leaves no mail behind. Right after the commit the queueing process puts a
``kernel.send_mail`` job on the queue (the fast path); the event's handler puts the same job there
under the same id (the safety net, for a process that died between its commit and that step). The
job hands the message to the SMTP server and records it as sent in the same transaction that
locked the row, so a retried job, a job queued twice or a redelivered event never sends a sent
message again. Exactly once stops at the SMTP server: a worker killed after the server accepted the
message but before its commit sends it again on retry (the same ``Message-ID``, so receivers can
drop the copy).

Mail outside any tenant (a sign-up confirmation before the workspace exists) has no transaction to
join: :meth:`MailService.send` with ``tenant=None`` queues its job directly. The sender is the
tenant's display name (or name) at the platform's ``mail_from`` address. Without ``smtp_host``
(development) the message is logged instead of sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import aiosmtplib
import jinja2
import msgspec
from sqlalchemy import select

from inopsio import templating
from inopsio.db.base import utcnow
from inopsio.db.engine import after_commit
from inopsio.jobs import PermanentJobError
from inopsio.mail.models import OutgoingMail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.events.bus import EventBus
    from inopsio.jobs import JobQueue
    from inopsio.plugins import PluginRegistry
    from inopsio.settings import Settings
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.mail")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
SEND_JOB = "kernel.send_mail"
QUEUED_EVENT = "kernel.mail.queued"
_SESSION_MAIL = "inopsio.mail.committed"
#: How long shutdown waits for the fast path's jobs to reach the queue (the dispatchers queue any lost).
SETTLE_SECONDS = 5.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file sent with a message: ``Attachment(filename="INV-1.pdf", content_type="application/pdf",
    content=pdf_bytes)``."""

    filename: str
    content_type: str
    content: bytes

    def __post_init__(self) -> None:
        if not _CONTENT_TYPE.match(self.content_type):
            raise ValueError(f"attachment {self.filename!r}: {self.content_type!r} is not a content type")
        if not _one_line(self.filename) or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"attachment filename {self.filename!r} must be a bare file name")


class RenderedMail(msgspec.Struct, kw_only=True):
    """A message ready to send."""

    sender: str
    to: str
    subject: str
    text: str
    html: str


class MailQueued(msgspec.Struct, kw_only=True):
    """``kernel.mail.queued``: a message is in the tenant's outbox. Only its id: the body stays private."""

    mail_id: UUID
    template: str


def _one_line(value: str) -> str:
    """Header values never carry line breaks (header injection) or other control characters."""
    return _CONTROL.sub(" ", value).strip()


_attachments_encoder = msgspec.msgpack.Encoder()
_attachments_decoder = msgspec.msgpack.Decoder(list[Attachment])


def mail_environment(plugin_templates: dict[str, Path]) -> jinja2.Environment:
    """The kernel's mail templates by bare name, each plugin's under ``<plugin>/``.

    Sandboxed like anything a tenant may write, so the same environment can render a tenant's own text.
    """
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(TEMPLATES),
            jinja2.PrefixLoader(
                {name: jinja2.FileSystemLoader(folder) for name, folder in plugin_templates.items()}, delimiter="/"
            ),
        ]
    )
    return templating.sandboxed_environment(
        loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        keep_trailing_newline=True,
    )


def collect_mail_templates(registry: PluginRegistry) -> dict[str, Path]:
    """The template folder each plugin registers, by the namespace its templates are named in."""
    folders: dict[str, Path] = {}

    def validate(plugin: str, item: Any) -> None:
        if not isinstance(item, (str, Path)) or not Path(item).is_dir():
            raise ValueError(f"register() takes the folder of the plugin's mail templates, not {item!r}")
        if registry.module_of(plugin) in folders:
            raise ValueError("a plugin registers one folder of mail templates")
        folders[registry.module_of(plugin)] = Path(item)

    registry.collect("register_mail_templates", validate)
    return folders


class MailService:
    def __init__(
        self,
        settings: Settings,
        jobs: JobQueue,
        db: Database,
        events: EventBus,
        plugin_templates: dict[str, Path] | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.db = db
        self.events = events
        self.env = mail_environment(plugin_templates or {})
        self.from_address = parseaddr(settings.mail_from)[1] or "no-reply@localhost"
        self._enqueuing: set[asyncio.Task[None]] = set()
        #: Jobs the fast path queued since :meth:`settle` last looked.
        self._enqueued = 0

    def sender_for(self, tenant: TenantInfo | None) -> str:
        if tenant is None:
            return self.settings.mail_from
        name = _one_line(tenant.settings.display_name or tenant.name)
        return formataddr((name, self.from_address))

    def render(self, tenant: TenantInfo | None, *, to: str, template: str, context: dict[str, Any]) -> RenderedMail:
        """Render ``template`` for ``tenant``; the templates also see ``tenant_name`` and ``tenant_slug``."""
        values = {
            "tenant_name": (tenant.settings.display_name or tenant.name) if tenant else "Inopsio",
            "tenant_slug": tenant.slug if tenant else "",
            **context,
        }
        return RenderedMail(
            sender=self.sender_for(tenant),
            to=_one_line(to),
            subject=_one_line(self.env.get_template(f"{template}.subject.txt").render(values)),
            text=self.env.get_template(f"{template}.txt").render(values),
            html=self.env.get_template(f"{template}.html").render(values),
        )

    async def queue(
        self,
        session: AsyncSession,
        tenant: TenantInfo,
        *,
        to: str,
        template: str,
        context: dict[str, Any],
        attachments: Sequence[Attachment] = (),
        actor: str | None = None,
    ) -> UUID:
        """Render now and write the message to the outbox in ``session``'s transaction; sent after commit.

        Returns the message's id. ``session`` must be scoped to ``tenant``.
        """
        if session.info.get("tenant_id") != tenant.id:
            raise ValueError("queue mail in a session scoped to the message's tenant")
        mail = self.render(tenant, to=to, template=template, context=context)
        row = OutgoingMail(
            template=template,
            sender=mail.sender,
            recipient=mail.to,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            attachments=_attachments_encoder.encode(list(attachments)) if attachments else None,
            status="queued",
            attempts=0,
        )
        session.add(row)
        await session.flush()
        await self.events.publish(session, QUEUED_EVENT, MailQueued(mail_id=row.id, template=template), actor=actor)
        self._enqueue_after_commit(session, tenant.id, row.id)
        return row.id

    def _enqueue_after_commit(self, session: AsyncSession, tenant_id: UUID, mail_id: UUID) -> None:
        committed: list[UUID] | None = session.info.get(_SESSION_MAIL)
        if committed is None:
            committed = session.info[_SESSION_MAIL] = []
            after_commit(session, lambda: self._start_enqueueing(tenant_id, committed))
        committed.append(mail_id)

    def _start_enqueueing(self, tenant_id: UUID, mail_ids: list[UUID]) -> None:
        # The committer never waits for Redis; a message queued in a savepoint that rolled back has no
        # row, and its job then does nothing.
        task = asyncio.get_running_loop().create_task(self._enqueue_committed(tenant_id, mail_ids))
        self._enqueuing.add(task)
        task.add_done_callback(self._enqueuing.discard)

    async def _enqueue_committed(self, tenant_id: UUID, mail_ids: list[UUID]) -> None:
        try:
            for mail_id in mail_ids:
                await self.enqueue_delivery(tenant_id, mail_id)
                self._enqueued += 1
        except Exception as exc:
            log.warning(
                "queueing committed mail failed (%s: %s); the event dispatcher queues it", type(exc).__name__, exc
            )

    async def settle(self) -> int:
        """Wait for the fast path's jobs still on their way to the queue; returns how many jobs it queued
        since the last call (a worker draining the queue runs again while this is not 0)."""
        pending = list(self._enqueuing)
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_SECONDS)
        enqueued, self._enqueued = self._enqueued, 0
        return enqueued

    async def send(
        self,
        tenant: TenantInfo | None,
        *,
        to: str,
        template: str,
        context: dict[str, Any],
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """Queue a message that no database change goes with (a notice after a change in Redis, say).

        A tenant's message goes through its outbox in a transaction of its own; one outside any
        tenant (no outbox to write to, nothing to roll back) is queued as a job at once.
        """
        if tenant is not None:
            async with self.db.session(tenant.id) as session:
                await self.queue(session, tenant, to=to, template=template, context=context, attachments=attachments)
            return
        if attachments:
            raise ValueError("mail outside a tenant carries no attachments (it has no outbox to keep them in)")
        mail = self.render(None, to=to, template=template, context=context)
        await self.jobs.enqueue(SEND_JOB, tenant_id=None, **msgspec.structs.asdict(mail))

    async def enqueue_delivery(self, tenant_id: UUID, mail_id: UUID) -> None:
        """Put the job that sends a committed message on the queue; a repeated call adds nothing."""
        await self.jobs.enqueue(SEND_JOB, tenant_id=tenant_id, _job_id=f"mail:{mail_id}", mail_id=str(mail_id))

    async def deliver_queued(self, tenant_id: UUID, mail_id: UUID) -> bool:
        """Send one outbox message unless it was sent (or refused for good) already; returns whether it sent.

        The row stays locked while the SMTP server is talked to, so two workers never send it together,
        and ``sent`` commits right after the server accepted it. A failure is recorded on the row
        (attempts, last error) before it is raised for the job's retry.
        """
        failure: Exception | None = None
        async with self.db.session(tenant_id) as session:
            query = select(OutgoingMail).where(OutgoingMail.id == mail_id).with_for_update()
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None or row.status != "queued":
                return False
            mail = RenderedMail(sender=row.sender, to=row.recipient, subject=row.subject, text=row.text, html=row.html)
            attachments = _attachments_decoder.decode(row.attachments) if row.attachments else []
            row.attempts += 1
            try:
                await self.deliver(mail, f"mail:{mail_id}", attachments)
            except Exception as exc:
                failure = exc
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                if isinstance(exc, PermanentJobError):
                    row.status = "failed"
            else:
                row.status = "sent"
                row.sent_at = utcnow()
                row.last_error = None
        if failure is not None:
            raise failure
        return True

    def message(self, mail: RenderedMail, message_key: str, attachments: Iterable[Attachment] = ()) -> EmailMessage:
        message = EmailMessage()
        message["From"] = mail.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        # Derived from the message's id: a retry after a lost reply carries the same id, so receivers can drop it.
        domain = self.from_address.rpartition("@")[2] or "localhost"
        message["Message-ID"] = f"<{hashlib.sha256(message_key.encode()).hexdigest()[:32]}@{domain}>"
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        for attachment in attachments:
            maintype, subtype = attachment.content_type.split("/", 1)
            message.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=_one_line(attachment.filename)
            )
        return message

    async def deliver(self, mail: RenderedMail, message_key: str, attachments: Iterable[Attachment] = ()) -> None:
        """Hand the message to the SMTP server; a refusal (5xx) is permanent, anything else retries."""
        message = self.message(mail, message_key, attachments)
        settings = self.settings
        if not settings.smtp_host:
            # The text as written, not the encoded message: quoted-printable would break the links in it
            # (development reads sign-up and reset links from here).
            log.info(
                "mail not sent (no smtp_host configured)\nFrom: %s\nTo: %s\nSubject: %s\n\n%s",
                mail.sender,
                mail.to,
                mail.subject,
                mail.text,
            )
            return
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentJobError(f"the SMTP server refused {mail.to}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentJobError(f"the SMTP server refused the message: {exc.code} {exc.message}") from exc
            raise
