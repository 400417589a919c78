"""The mail outbox, end to end over a real SMTP server: mail is written in the transaction of the change
that causes it, sent only after that transaction commits, sent once however often its delivery runs,
and kept out of the activity feed; plugins' templates render sandboxed, with attachments."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from uuid import UUID

import jinja2.exceptions
import pytest
from sqlalchemy import select, text

from inopsio import hookimpl
from inopsio.jobs import drain
from inopsio.mail import Attachment
from inopsio.mail.models import OutgoingMail
from inopsio.mail.plugin import send_mail
from inopsio.mail.service import QUEUED_EVENT, MailService, collect_mail_templates
from inopsio.plugins import build_plugin_manager


class Abort(Exception):
    """Raised inside a transaction to roll it back."""


class WorkerKilled(BaseException):
    """Stands for the process dying: not an ``Exception``, so nothing records or retries it in-process."""


async def queue_invitation(kernel: Any, session: Any, tenant: Any, to: str, **extra: Any) -> UUID:
    context = {"link": "https://example.test/accept", "inviter": "Ada", "role": "member", "expires_days": 7}
    mail_id: UUID = await kernel.mail.queue(session, tenant, to=to, template="invitation", context=context, **extra)
    return mail_id


async def outbox_row(kernel: Any, tenant: Any, mail_id: UUID) -> OutgoingMail:
    async with kernel.db.session(tenant.id) as session:
        row: OutgoingMail = (await session.execute(select(OutgoingMail).where(OutgoingMail.id == mail_id))).scalar_one()
        return row


async def test_mail_queued_in_a_transaction_that_rolls_back_is_never_sent(
    kernel: Any, make_tenant: Any, run_jobs: Any, smtp_sink: Any
) -> None:
    tenant = await make_tenant()
    to = f"rolled-back-{secrets.token_hex(4)}@example.com"

    async def invite_then_fail() -> None:
        async with kernel.db.session(tenant.id) as session:
            await queue_invitation(kernel, session, tenant, to)
            raise Abort

    with pytest.raises(Abort):
        await invite_then_fail()
    result = await run_jobs()
    assert result.failed == 0
    assert smtp_sink.to(to) == []
    async with kernel.db.session(tenant.id) as session:
        assert (await session.execute(select(OutgoingMail))).scalars().all() == []
        assert (await session.execute(text("SELECT count(*) FROM event_log"))).scalar_one() == 0


async def test_committed_mail_is_sent_only_after_commit_and_records_its_delivery(
    kernel: Any, make_tenant: Any, run_jobs: Any, smtp_sink: Any
) -> None:
    tenant = await make_tenant()
    to = f"committed-{secrets.token_hex(4)}@example.com"
    async with kernel.db.session(tenant.id) as session:
        mail_id = await queue_invitation(kernel, session, tenant, to)
        # Nothing leaves the process while the transaction is open: not even the job is queued.
        await drain(kernel, max_seconds=10)
        assert smtp_sink.to(to) == []
    await run_jobs()
    [message] = smtp_sink.to(to)
    assert message["Subject"]
    row = await outbox_row(kernel, tenant, mail_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None


async def test_a_worker_killed_before_delivery_still_delivers_exactly_once(
    kernel: Any, make_tenant: Any, run_jobs: Any, drain_events: Any, smtp_sink: Any, monkeypatch: Any
) -> None:
    tenant = await make_tenant()
    to = f"killed-{secrets.token_hex(4)}@example.com"
    async with kernel.db.session(tenant.id) as session:
        mail_id = await queue_invitation(kernel, session, tenant, to)
    await drain_events()  # the committed event queues the job

    real_deliver = kernel.mail.deliver

    async def die_before_smtp(*args: Any, **kwargs: Any) -> None:
        raise WorkerKilled

    # The first worker dies holding the row's lock, before the SMTP server saw anything: its
    # transaction rolls back and the message is still queued.
    monkeypatch.setattr(kernel.mail, "deliver", die_before_smtp)
    with pytest.raises(WorkerKilled):
        await send_mail({"kernel": kernel, "tenant_id": tenant.id, "job_id": "killed"}, mail_id=str(mail_id))
    assert (await outbox_row(kernel, tenant, mail_id)).status == "queued"
    monkeypatch.setattr(kernel.mail, "deliver", real_deliver)

    # The job runs again (arq re-runs a job whose worker died), the event is delivered again (its
    # dispatcher died before recording the handler), and a stray copy of the job runs once more:
    # one message arrives.
    await run_jobs()
    await kernel.mail.enqueue_delivery(tenant.id, mail_id)
    await run_jobs()
    assert await kernel.mail.deliver_queued(tenant.id, mail_id) is False
    await send_mail({"kernel": kernel, "tenant_id": tenant.id, "job_id": "stray"}, mail_id=str(mail_id))
    assert len(smtp_sink.to(to)) == 1
    assert (await outbox_row(kernel, tenant, mail_id)).status == "sent"


async def test_a_refusing_smtp_server_is_retried_and_the_message_arrives_once(
    kernel: Any, make_tenant: Any, run_jobs: Any, smtp_sink: Any
) -> None:
    tenant = await make_tenant()
    to = f"retried-{secrets.token_hex(4)}@example.com"
    async with kernel.db.session(tenant.id) as session:
        mail_id = await queue_invitation(kernel, session, tenant, to)
    await kernel.events.dispatch_once(kernel)
    smtp_sink.refuse_next(1)
    with pytest.raises(Exception, match="Try again later"):
        await kernel.mail.deliver_queued(tenant.id, mail_id)
    row = await outbox_row(kernel, tenant, mail_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "Try again later" in (row.last_error or "")
    await run_jobs()
    assert len(smtp_sink.to(to)) == 1
    row = await outbox_row(kernel, tenant, mail_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


async def test_a_permanent_refusal_marks_the_message_failed_and_never_retries(
    kernel: Any, make_tenant: Any, run_jobs: Any, smtp_sink: Any
) -> None:
    tenant = await make_tenant()
    to = f"refused-{secrets.token_hex(4)}@example.com"
    async with kernel.db.session(tenant.id) as session:
        mail_id = await queue_invitation(kernel, session, tenant, to)
    smtp_sink.refuse_next(1, "554 5.7.1 No thanks")
    await run_jobs()
    await run_jobs()
    assert smtp_sink.to(to) == []
    row = await outbox_row(kernel, tenant, mail_id)
    assert (row.status, row.attempts) == ("failed", 1)


async def test_the_feed_sees_only_the_message_id_never_its_body_or_attachments(
    kernel: Any, make_tenant: Any, run_jobs: Any, smtp_sink: Any, sign_in: Any, client: Any
) -> None:
    tenant = await make_tenant()
    to = f"private-{secrets.token_hex(4)}@example.com"
    report = Attachment(filename="report.csv", content_type="text/csv", content=b"secret,figures\n1,2\n")
    async with kernel.db.session(tenant.id) as session:
        mail_id = await queue_invitation(kernel, session, tenant, to, attachments=[report])
    async with kernel.db.session(tenant.id) as session:
        data = (
            await session.execute(text("SELECT data FROM event_log WHERE type = :t"), {"t": QUEUED_EVENT})
        ).scalar_one()
    assert data == {"mail_id": str(mail_id), "template": "invitation"}
    assert QUEUED_EVENT not in {e["type"] for e in await feed(client, await sign_in(tenant, "member"))}
    assert QUEUED_EVENT in {e["type"] for e in await feed(client, await sign_in(tenant, "admin"))}

    await run_jobs()
    [message] = smtp_sink.to(to)
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content() == "secret,figures\n1,2\n"


async def feed(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/events", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class AcmeMail:
    """A third-party plugin that brings one mail template."""

    INOPSIO_PLUGIN_NAME = "acme"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @hookimpl
    def register_mail_templates(self, register: Any) -> None:
        register(self.folder)


def write_templates(folder: Path, html: str = "<p>Hello {{ name }}</p>") -> None:
    (folder / "welcome.subject.txt").write_text("Welcome to {{ tenant_name }}\n")
    (folder / "welcome.txt").write_text("Hello {{ name }}\n")
    (folder / "welcome.html").write_text(html)


async def test_a_plugin_registered_template_renders_by_its_namespace(
    kernel: Any, make_tenant: Any, tmp_path: Path
) -> None:
    write_templates(tmp_path)
    registry = build_plugin_manager(enabled=[], extra=[AcmeMail(tmp_path)])
    folders = collect_mail_templates(registry)
    assert folders == {"acme": tmp_path}
    mail = MailService(kernel.settings, kernel.jobs, kernel.db, kernel.events, folders)
    tenant = await make_tenant(name="Acme Works")
    rendered = mail.render(tenant, to="a@example.com", template="acme/welcome", context={"name": "<Ada>"})
    assert rendered.subject == "Welcome to Acme Works"
    assert rendered.text == "Hello <Ada>\n"
    assert rendered.html == "<p>Hello &lt;Ada&gt;</p>"
    # The kernel's own templates keep their bare names beside the plugin's.
    context = {"link": "https://example.test", "inviter": "Ada", "role": "member", "expires_days": 7}
    assert mail.render(tenant, to="a@example.com", template="invitation", context=context).subject


async def test_mail_templates_are_sandboxed(kernel: Any, make_tenant: Any, tmp_path: Path) -> None:
    write_templates(tmp_path, html="{{ name.__class__.__mro__ }}")
    mail = MailService(kernel.settings, kernel.jobs, kernel.db, kernel.events, {"acme": tmp_path})
    tenant = await make_tenant()
    with pytest.raises(jinja2.exceptions.SecurityError):
        mail.render(tenant, to="a@example.com", template="acme/welcome", context={"name": "x"})


def test_an_attachment_needs_a_bare_file_name_and_a_content_type() -> None:
    with pytest.raises(ValueError, match="bare file name"):
        Attachment(filename="../etc/passwd", content_type="text/plain", content=b"")
    with pytest.raises(ValueError, match="not a content type"):
        Attachment(filename="a.txt", content_type="text plain\r\nBcc: x", content=b"")


async def test_retention_deletes_old_sent_mail_and_keeps_what_is_still_queued(
    kernel: Any, make_tenant: Any, run_jobs: Any
) -> None:
    from inopsio.mail.plugin import apply_retention

    tenant = await make_tenant()
    async with kernel.db.session(tenant.id) as session:
        sent = await queue_invitation(kernel, session, tenant, f"old-{secrets.token_hex(4)}@example.com")
    await run_jobs()
    async with kernel.db.session(tenant.id) as session:
        waiting = await queue_invitation(kernel, session, tenant, f"waiting-{secrets.token_hex(4)}@example.com")
    async with kernel.db.session(tenant.id) as session:
        await session.execute(text("UPDATE mail_outbox SET created_at = now() - interval '400 days'"))
    assert await apply_retention({"kernel": kernel}) >= 1
    async with kernel.db.session(tenant.id) as session:
        left = set((await session.execute(select(OutgoingMail.id))).scalars())
    assert left == {waiting}
    assert sent not in left
    await run_jobs()
