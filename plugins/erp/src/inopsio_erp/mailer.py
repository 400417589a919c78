"""The ERP plugin's emails (invoice, reminder, payment confirmation), sent through the kernel's mail job.

The kernel's ``MailService`` renders only its own templates, so the plugin renders its own
(``templates/erp/mail/<name>.{subject.txt,txt,html}``) and queues the kernel's ``kernel.send_mail``
job with the result: delivery, retries and the sender address stay the kernel's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from inopsio.mail.service import SEND_JOB, RenderedMail
from inopsio.tenancy.schemas import TenantInfo

TEMPLATES = Path(__file__).resolve().parent / "templates" / "erp" / "mail"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


async def send(
    kernel: Any, tenant: TenantInfo, *, to: str, template: str, context: dict[str, Any], job_id: str
) -> str | None:
    """Render ``template`` now and queue its delivery; ``job_id`` makes a repeated call send once."""
    values = {"tenant_name": tenant.settings.display_name or tenant.name, **context}
    mail = RenderedMail(
        sender=kernel.mail.sender_for(tenant),
        to=" ".join(to.split()),
        subject=" ".join(_env.get_template(f"{template}.subject.txt").render(values).split()),
        text=_env.get_template(f"{template}.txt").render(values),
        html=_env.get_template(f"{template}.html").render(values),
    )
    result: str | None = await kernel.jobs.enqueue(
        SEND_JOB, tenant_id=tenant.id, _job_id=job_id, **msgspec.structs.asdict(mail)
    )
    return result
