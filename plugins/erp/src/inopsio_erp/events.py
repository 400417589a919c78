"""The ERP plugin's event types and the msgspec Structs their ``data`` follows (see docs/events.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.events.schemas import EventType


class InvoiceEvent(msgspec.Struct, kw_only=True):
    """Data of every ``erp.invoice.*`` event: which invoice, and its money state after the change."""

    invoice_id: UUID
    number: str | None
    kind: str
    status: str
    customer_id: UUID
    currency: str
    total: Decimal
    balance: Decimal
    due_date: dt.date | None = None


class PaymentEvent(msgspec.Struct, kw_only=True):
    """Data of every ``erp.payment.*`` event."""

    invoice_id: UUID
    number: str | None
    currency: str
    amount: Decimal
    method: str
    balance: Decimal
    payment_id: UUID | None = None
    reason: str | None = None


async def publish(
    kernel: Any, session: AsyncSession, event_type: str, data: msgspec.Struct, *, actor: str | None = None
) -> None:
    """Publish through the kernel's outbox. Demo seeding (``seed_demo_data`` gets no kernel) passes
    ``kernel=None``: the demo's history is data, not news, so no event is recorded for it."""
    if kernel is not None:
        await kernel.events.publish(session, event_type, data, actor=actor)


EVENT_TYPES = (
    EventType(name="erp.invoice.issued", description="An invoice or credit note was issued", payload=InvoiceEvent),
    EventType(name="erp.invoice.sent", description="An invoice was emailed to its customer", payload=InvoiceEvent),
    EventType(name="erp.invoice.paid", description="An invoice was paid in full", payload=InvoiceEvent),
    EventType(name="erp.invoice.overdue", description="An invoice passed its due date unpaid", payload=InvoiceEvent),
    EventType(name="erp.invoice.voided", description="An issued invoice was voided", payload=InvoiceEvent),
    EventType(name="erp.payment.received", description="A payment was booked on an invoice", payload=PaymentEvent),
    EventType(name="erp.payment.failed", description="A card or bank payment attempt failed", payload=PaymentEvent),
    EventType(name="erp.payment.refunded", description="Money was refunded on an invoice", payload=PaymentEvent),
)
