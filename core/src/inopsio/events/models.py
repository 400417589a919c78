"""Outbox tables.

``event_log`` holds each event with its payload, tenant-owned behind row-level security: it is the
activity feed too. ``event_pending`` is a kernel table of bare ids (no payload, nothing a tenant
wrote) so a dispatcher can find work across tenants, then read each event inside its tenant.
``event_deliveries`` records each handler's outcome per event: the idempotency key, the retry
schedule, and the parked deliveries an admin can replay.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import APP_PRIVILEGES, Base, TenantOwned, TenantScoped, tenant_table_args, utcnow


class EventRecord(TenantOwned, Base):
    __tablename__ = "event_log"
    __table_args__ = tenant_table_args(
        Index("ix_event_log_tenant_time", "tenant_id", "occurred_at"),
        Index("ix_event_log_tenant_type_time", "tenant_id", "type", "occurred_at"),
    )

    type: Mapped[str] = mapped_column(String(150))
    actor: Mapped[str | None] = mapped_column(String(320))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PendingEvent(Base):
    __tablename__ = "event_pending"
    __table_args__ = (
        Index("ix_event_pending_available", "available_at"),
        {"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE, DELETE"}},
    )

    event_id: Mapped[UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[UUID]
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claims: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(TenantScoped, Base):
    """One handler's outcome for one event: ``done``, ``retrying`` or ``parked``."""

    __tablename__ = "event_deliveries"
    __table_args__ = tenant_table_args(Index("ix_event_deliveries_status", "tenant_id", "status"))

    event_id: Mapped[UUID] = mapped_column(primary_key=True)
    handler: Mapped[str] = mapped_column(String(150), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
