"""Workflow node types of the ERP: triggers on invoice and payment events, and actions that create an
invoice, send one, and record a payment. Executors call the same services as the API."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import UUID

import msgspec

from inopsio.automation import NodeContext, NodeType
from inopsio.errors import Problem
from inopsio_erp.invoices import services as invoices
from inopsio_erp.invoices.schemas import InvoiceIn, LineIn
from inopsio_erp.payments import services as payments
from inopsio_erp.totals import minor_unit


class CreateInvoiceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Create an invoice with one line from the item: customer, description and amount come from the
    item's fields (or fixed values here)."""

    customer_id: UUID | None = None
    customer_field: str = "customer_id"
    description: str = ""
    description_field: str = "title"
    amount_field: str = "amount"
    currency: str | None = None
    tax_rate_ids: list[UUID] = msgspec.field(default_factory=list)
    #: Issue it right away (numbered, immutable); otherwise it stays a draft.
    issue: bool = False
    #: Email it to the customer (implies issue).
    send: bool = False


class SendInvoiceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    invoice_field: str = "invoice_id"
    #: Another address than the customer's.
    to: str | None = None


class RecordPaymentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    invoice_field: str = "invoice_id"
    amount_field: str = "amount"
    method: Literal["bank_transfer", "cash", "cheque", "other"] = "bank_transfer"
    reference_field: str | None = None


def _field(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise ValueError(f"the item has no {name!r}")
    return data[name]


def _uuid(data: dict[str, Any], name: str) -> UUID:
    try:
        return UUID(str(_field(data, name)))
    except ValueError:
        raise ValueError(f"{name!r} is not an id") from None


def _decimal(data: dict[str, Any], name: str) -> Decimal:
    try:
        value = Decimal(str(_field(data, name)))
    except InvalidOperation:
        raise ValueError(f"{name!r} is not an amount") from None
    if not value.is_finite():
        raise ValueError(f"{name!r} is not an amount")
    return value


def _user_error(exc: Problem) -> ValueError:
    errors = exc.members.get("errors") or []
    where = "; ".join(f"{e.get('pointer', '')}: {e.get('detail', '')}" for e in errors)
    return ValueError(f"{exc.detail}{' (' + where + ')' if where else ''}")


async def _tenant(ctx: NodeContext) -> Any:
    return await ctx.kernel.tenants.get(ctx.tenant_id)


def _actor(ctx: NodeContext) -> str:
    return f"user:{ctx.actor_id}" if ctx.actor_id else "workflow"


async def create_invoice(ctx: NodeContext, config: CreateInvoiceConfig, data: dict[str, Any]) -> dict[str, Any]:
    customer_id = config.customer_id or _uuid(data, config.customer_field)
    description = config.description or str(data.get(config.description_field) or "").strip()
    amount = _decimal(data, config.amount_field)
    try:
        body = InvoiceIn(
            customer_id=customer_id,
            currency=config.currency,
            lines=[LineIn(description=description, unit_price=amount, tax_rate_ids=list(config.tax_rate_ids))],
        )
        invoice = await invoices.create_draft(ctx.session, body)
        if config.issue or config.send:
            tenant = await _tenant(ctx)
            invoice = await invoices.issue(ctx.kernel, ctx.session, tenant, invoice.id, actor=_actor(ctx))
            if config.send:
                invoice = await invoices.send(ctx.kernel, ctx.session, tenant, invoice.id, actor=_actor(ctx))
    except Problem as exc:
        raise _user_error(exc) from None
    unit = minor_unit(invoice.currency)
    return {
        **data,
        "invoice_id": str(invoice.id),
        "invoice_number": invoice.number,
        "invoice_status": invoice.status,
        "invoice_total": str(invoice.total.quantize(unit)),
        "currency": invoice.currency,
    }


async def send_invoice(ctx: NodeContext, config: SendInvoiceConfig, data: dict[str, Any]) -> dict[str, Any]:
    invoice_id = _uuid(data, config.invoice_field)
    try:
        invoice = await invoices.send(
            ctx.kernel, ctx.session, await _tenant(ctx), invoice_id, to=config.to, actor=_actor(ctx)
        )
    except Problem as exc:
        raise _user_error(exc) from None
    return {**data, "invoice_sent_at": invoice.sent_at.isoformat() if invoice.sent_at else None}


async def record_payment(ctx: NodeContext, config: RecordPaymentConfig, data: dict[str, Any]) -> dict[str, Any]:
    invoice_id = _uuid(data, config.invoice_field)
    amount = _decimal(data, config.amount_field)
    reference = str(data.get(config.reference_field) or "") if config.reference_field else ""
    try:
        payment = await payments.record_payment(
            ctx.kernel,
            ctx.session,
            await _tenant(ctx),
            invoice_id,
            amount=amount,
            method=config.method,
            reference=reference[:200],
            actor=_actor(ctx),
        )
        invoice = await invoices.get_invoice(ctx.session, invoice_id)
    except Problem as exc:
        raise _user_error(exc) from None
    unit = minor_unit(invoice.currency)
    return {
        **data,
        "payment_id": str(payment.id),
        "invoice_status": invoice.status,
        "invoice_balance": str(invoices.balance(invoice).quantize(unit)),
    }


NODE_TYPES = (
    NodeType(
        name="erp.invoice.issued",
        kind="trigger",
        title="Invoice issued",
        description="Starts when an invoice or credit note is issued",
        event="erp.invoice.issued",
    ),
    NodeType(
        name="erp.invoice.paid",
        kind="trigger",
        title="Invoice paid",
        description="Starts when an invoice is paid in full",
        event="erp.invoice.paid",
    ),
    NodeType(
        name="erp.invoice.overdue",
        kind="trigger",
        title="Invoice overdue",
        description="Starts when an invoice passes its due date unpaid",
        event="erp.invoice.overdue",
    ),
    NodeType(
        name="erp.payment.received",
        kind="trigger",
        title="Payment received",
        description="Starts when a payment is booked",
        event="erp.payment.received",
    ),
    NodeType(
        name="erp.invoice.create",
        kind="action",
        title="Create invoice",
        description="Creates an invoice (draft, issued or sent) with one line from the item",
        config=CreateInvoiceConfig,
        execute=create_invoice,
    ),
    NodeType(
        name="erp.invoice.send",
        kind="action",
        title="Send invoice",
        description="Emails an issued invoice's link to its customer",
        config=SendInvoiceConfig,
        execute=send_invoice,
    ),
    NodeType(
        name="erp.payment.record",
        kind="action",
        title="Record payment",
        description="Books a payment received by transfer, cash or cheque",
        config=RecordPaymentConfig,
        execute=record_payment,
    ),
)
