"""Webhook tables: the tenant's subscriptions and the log of every delivery attempt."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import Base, TenantOwned, Timestamped, tenant_foreign_key, tenant_table_args, utcnow


class WebhookSubscription(TenantOwned, Timestamped, Base):
    """A URL that receives the tenant's events of the given types (exact names or ``crm.deal.*``)."""

    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(default=list)
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Why delivery stopped by itself (the receiver answered 410 Gone); cleared when re-enabled.
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    #: The signing secret, encrypted with the installation's key (``kernel.identity.box``).
    secret: Mapped[str] = mapped_column(Text)
    #: Who set it up (or last changed it): it carries only the events this user may read now
    #: (``None``: set up before the rule, read as the built-in admin role).
    created_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class WebhookAttempt(TenantOwned, Base):
    """One POST to a subscription's URL: what it sent (event), what came back, how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(
            ["subscription_id"], "webhook_subscriptions", ondelete="CASCADE", name="fk_webhook_attempts_subscription"
        ),
        Index("ix_webhook_attempts_subscription", "tenant_id", "subscription_id", "id"),
        Index("ix_webhook_attempts_event", "tenant_id", "subscription_id", "event_id"),
    )

    subscription_id: Mapped[UUID]
    event_id: Mapped[UUID]
    event_type: Mapped[str] = mapped_column(String(150))
    #: 1 for the first try of this event to this subscription, then 2, 3, ...
    attempt: Mapped[int] = mapped_column(Integer)
    #: ``delivered`` (2xx), ``retrying``, ``failed`` (gave up, or a ping that did not get a 2xx),
    #: ``disabled`` (410 Gone switched the subscription off).
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    #: The first kilobyte of the response body, for the admin to see what the receiver said.
    response_body: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
