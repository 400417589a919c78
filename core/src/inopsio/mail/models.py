"""The mail outbox: each message a tenant's transaction queued, kept private to that tenant.

A row is written in the transaction of the change that causes the mail, so it exists exactly when
the change does; the ``kernel.mail.queued`` event written with it carries only the row's id (the
activity feed and WebSockets never see a body or an attachment). ``status`` records the SMTP
delivery: ``queued`` until the server accepted the message (``sent``) or refused it for good
(``failed``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import Base, TenantOwned, tenant_table_args, utcnow


class OutgoingMail(TenantOwned, Base):
    __tablename__ = "mail_outbox"
    __table_args__ = tenant_table_args(Index("ix_mail_outbox_status", "tenant_id", "status", "created_at"))

    template: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(400))
    recipient: Mapped[str] = mapped_column(String(400))
    subject: Mapped[str] = mapped_column(String(1000))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    #: The attachments (filename, content type, bytes), MessagePack-encoded: read only to send them.
    attachments: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
