"""The ERP plugin's event types, the msgspec Structs their ``data`` follows and who may read them (docs/events.md)."""

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


INVOICES_READ = "erp.invoices.read"
PAYMENTS_READ = "erp.payments.read"


def _invoice_event(name: str, description: str) -> EventType:
    return EventType(name=name, description=description, permission=INVOICES_READ, payload=InvoiceEvent)


def _payment_event(name: str, description: str) -> EventType:
    return EventType(name=name, description=description, permission=PAYMENTS_READ, payload=PaymentEvent)


#: Each is read with the permission that reads its record (invoices, payments) in the API.
EVENT_TYPES = (
    _invoice_event("erp.invoice.issued", "An invoice or credit note was issued"),
    _invoice_event("erp.invoice.sent", "An invoice was emailed to its customer"),
    _invoice_event("erp.invoice.paid", "An invoice was paid in full"),
    _invoice_event("erp.invoice.overdue", "An invoice passed its due date unpaid"),
    _invoice_event("erp.invoice.voided", "An issued invoice was voided"),
    _payment_event("erp.payment.received", "A payment was booked on an invoice"),
    _payment_event("erp.payment.failed", "A card or bank payment attempt failed"),
    _payment_event("erp.payment.refunded", "Money was refunded on an invoice"),
)
