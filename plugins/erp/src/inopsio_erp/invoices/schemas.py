"""What the API speaks about invoices, credit notes and recurring templates (msgspec)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

MAX_LINES = 1000
DiscountKind = Literal["percent", "fixed"]


class LineIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    quantity: Decimal = Decimal(1)
    unit: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    #: The product's price when omitted and a product is named.
    unit_price: Decimal | None = None
    product_id: UUID | None = None
    #: The product's tax rates when omitted and a product is named.
    tax_rate_ids: Annotated[list[UUID], msgspec.Meta(max_length=10)] | None = None
    discount_kind: DiscountKind | None = None
    discount_value: Decimal | None = None


class InvoiceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    customer_id: UUID
    lines: Annotated[list[LineIn], msgspec.Meta(max_length=MAX_LINES)] = msgspec.field(default_factory=list)
    #: ISO 4217; the customer's currency when omitted.
    currency: str | None = None
    discount_kind: DiscountKind | None = None
    discount_value: Decimal | None = None
    notes: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    #: Days from issue to due date; the customer's terms when omitted.
    payment_terms_days: Annotated[int, msgspec.Meta(ge=0, le=365)] | None = None


class CreditNoteIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The lines to credit; the whole open amount of the invoice (one line) when omitted.
    lines: Annotated[list[LineIn], msgspec.Meta(max_length=MAX_LINES)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class TaxAmountOut(msgspec.Struct, kw_only=True):
    name: str
    rate: Decimal
    inclusive: bool
    category: str
    base: Decimal
    amount: Decimal


class LineOut(msgspec.Struct, kw_only=True):
    id: UUID
    position: int
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    product_id: UUID | None
    discount_kind: str | None
    discount_value: Decimal | None
    taxes: list[dict[str, Any]]
    amount: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal


class InvoiceOut(msgspec.Struct, kw_only=True):
    id: UUID
    kind: str
    status: str
    number: str | None
    customer_id: UUID
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    payment_terms_days: int | None
    discount_kind: str | None
    discount_value: Decimal | None
    notes: str
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    included_tax_total: Decimal
    total: Decimal
    amount_paid: Decimal
    credited_total: Decimal
    balance: Decimal
    tax_breakdown: list[dict[str, Any]]
    customer: dict[str, Any]
    credited_invoice_id: UUID | None
    public_url: str | None
    issued_at: dt.datetime | None
    sent_at: dt.datetime | None
    paid_at: dt.datetime | None
    voided_at: dt.datetime | None
    overdue_since: dt.date | None
    lines: list[LineOut] | None = None


class InvoiceSummary(msgspec.Struct, kw_only=True):
    id: UUID
    kind: str
    status: str
    number: str | None
    customer_id: UUID
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    total: Decimal
    balance: Decimal


class SendIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Another address than the customer's.
    to: Annotated[str, msgspec.Meta(max_length=320)] | None = None


Interval = Literal["monthly", "quarterly", "yearly"]


class RecurringIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    interval: Interval
    start_on: dt.date
    invoice: InvoiceIn
    send_email: bool = True
    active: bool = True


class RecurringOut(msgspec.Struct, kw_only=True):
    id: UUID
    customer_id: UUID
    interval: str
    next_run: dt.date
    send_email: bool
    active: bool
    runs: int
    invoice: dict[str, Any]
