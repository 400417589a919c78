"""The kernel's mail feature, registered through the plugin hooks: the job that delivers a message."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.mail.service import SEND_JOB, RenderedMail


async def send_mail(ctx: dict[str, Any], **fields: Any) -> None:
    await ctx["kernel"].mail.deliver(RenderedMail(**fields), ctx["job_id"])


@hookimpl
def register_jobs(register: Any) -> None:
    register(send_mail, name=SEND_JOB, max_tries=5, timeout=60, retry_delay=30)
