"""The mail service: ``await kernel.mail.send(tenant, to=..., template="reset_password", context={...})``.

A message is rendered when it is sent (so a template error surfaces to the caller) from three
templates in ``inopsio/templates/mail``: ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html``
(autoescaped). It then travels as a ``kernel.send_mail`` job, retried with backoff while the SMTP
server fails. The sender is the tenant's display name (or name) at the platform's ``mail_from``
address. Without ``smtp_host`` (development) the message is logged instead of sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib
import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from inopsio.jobs import PermanentJobError

if TYPE_CHECKING:
    from inopsio.jobs import JobQueue
    from inopsio.settings import Settings
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.mail")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
SEND_JOB = "kernel.send_mail"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class RenderedMail(msgspec.Struct, kw_only=True):
    """A message ready to send: what the ``kernel.send_mail`` job carries."""

    sender: str
    to: str
    subject: str
    text: str
    html: str


def _one_line(value: str) -> str:
    """Header values never carry line breaks (header injection) or other control characters."""
    return _CONTROL.sub(" ", value).strip()


class MailService:
    def __init__(self, settings: Settings, jobs: JobQueue) -> None:
        self.settings = settings
        self.jobs = jobs
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self.from_address = parseaddr(settings.mail_from)[1] or "no-reply@localhost"

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

    async def send(
        self,
        tenant: TenantInfo | None,
        *,
        to: str,
        template: str,
        context: dict[str, Any],
        job_id: str | None = None,
    ) -> str | None:
        """Render now, deliver from a job (retried while the SMTP server fails). Returns the job id."""
        mail = self.render(tenant, to=to, template=template, context=context)
        return await self.jobs.enqueue(
            SEND_JOB, tenant_id=tenant.id if tenant else None, _job_id=job_id, **msgspec.structs.asdict(mail)
        )

    def message(self, mail: RenderedMail, message_key: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = mail.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        # Derived from the job: a retry after a lost reply carries the same id, so receivers can drop the copy.
        domain = self.from_address.rpartition("@")[2] or "localhost"
        message["Message-ID"] = f"<{hashlib.sha256(message_key.encode()).hexdigest()[:32]}@{domain}>"
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        return message

    async def deliver(self, mail: RenderedMail, message_key: str) -> None:
        """Hand the message to the SMTP server; a refusal (5xx) is permanent, anything else retries."""
        message = self.message(mail, message_key)
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
