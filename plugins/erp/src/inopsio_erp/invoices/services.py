"""Invoices and credit notes: drafts with computed totals, issuing with gapless numbers, voiding,
sending, overdue marking, reminders and recurring templates."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db import utcnow
from inopsio.errors import Problem
from inopsio.mail import Attachment
from inopsio.tenancy.addresses import tenant_url
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp import formatting, totals
from inopsio_erp.catalog.services import get_customer, tax_rates_by_id
from inopsio_erp.company import format_number, get_settings, pattern_period
from inopsio_erp.events import InvoiceEvent, publish
from inopsio_erp.invoices.schemas import CreditNoteIn, InvoiceIn, LineIn
from inopsio_erp.models import Customer, Invoice, InvoiceLine, NumberCounter, Product
from inopsio_erp.validation import check_amount, check_currency, check_email, field_problem, problem_from_totals

ZERO = Decimal(0)
OPEN_STATES = ("issued", "partially_paid", "overdue")
INVOICE_SERIES = "INV"
CREDIT_NOTE_SERIES = "CN"


def balance(invoice: Invoice) -> Decimal:
    """What the customer still owes: total less credit notes less payments (net of refunds)."""
    if invoice.kind != "invoice" or invoice.status in ("draft", "void"):
        return ZERO
    return invoice.total - invoice.credited_total - invoice.amount_paid


def refresh_status(invoice: Invoice) -> None:
    """Derive an issued invoice's status from its money: paid, credited, overdue, partially paid or issued."""
    if invoice.status in ("draft", "void") or invoice.kind != "invoice":
        return
    if balance(invoice) <= 0:
        if invoice.amount_paid == 0 and invoice.credited_total > 0:
            invoice.status = "credited"
        else:
            invoice.status = "paid"
            invoice.paid_at = invoice.paid_at or utcnow()
    elif invoice.overdue_since is not None:
        invoice.status = "overdue"
        invoice.paid_at = None
    elif invoice.amount_paid > 0:
        invoice.status = "partially_paid"
        invoice.paid_at = None
    else:
        invoice.status = "issued"
        invoice.paid_at = None


def invoice_event(invoice: Invoice) -> InvoiceEvent:
    return InvoiceEvent(
        invoice_id=invoice.id,
        number=invoice.number,
        kind=invoice.kind,
        status=invoice.status,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        total=invoice.total,
        balance=balance(invoice),
        due_date=invoice.due_date,
    )


async def get_invoice(session: AsyncSession, invoice_id: UUID, *, lock: bool = False) -> Invoice:
    query = select(Invoice).where(Invoice.id == invoice_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    invoice = (await session.execute(query)).scalar_one_or_none()
    if invoice is None:
        raise Problem(404, "not-found", "No such invoice.")
    return invoice


async def get_by_token(session: AsyncSession, token: str) -> Invoice | None:
    if not token or len(token) > 64:
        return None
    query = select(Invoice).where(Invoice.public_token == token, Invoice.status != "draft")
    return (await session.execute(query)).scalar_one_or_none()


async def lines_of(session: AsyncSession, invoice_id: UUID) -> Sequence[InvoiceLine]:
    query = select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position)
    return (await session.execute(query)).scalars().all()


def _tax_snapshot(rate: Any) -> dict[str, Any]:
    return {
        "id": str(rate.id),
        "name": rate.name,
        "rate": str(rate.rate),
        "inclusive": rate.inclusive,
        "category": rate.category,
    }


async def build_lines(
    session: AsyncSession,
    currency: str,
    lines_in: Sequence[LineIn],
    discount_kind: str | None,
    discount_value: Decimal | None,
    pointer: str = "/lines",
) -> tuple[list[InvoiceLine], totals.InvoiceTotals]:
    """Lines with their taxes copied from the tenant's rates (and defaults from products), and totals."""
    product_ids = {line.product_id for line in lines_in if line.product_id}
    products: dict[UUID, Product] = {}
    if product_ids:
        rows = (await session.execute(select(Product).where(Product.id.in_(product_ids)))).scalars()
        products = {p.id: p for p in rows}
    wanted: list[UUID] = []
    for line in lines_in:
        if line.tax_rate_ids is not None:
            wanted += line.tax_rate_ids
        elif line.product_id in products:
            wanted += [UUID(str(t)) for t in products[line.product_id].tax_rate_ids]
    rates = await tax_rates_by_id(session, wanted)
    built: list[InvoiceLine] = []
    inputs: list[totals.LineInput] = []
    for i, line in enumerate(lines_in):
        where = f"{pointer}/{i}"
        product = None
        if line.product_id is not None:
            product = products.get(line.product_id)
            if product is None:
                raise field_problem(f"{where}/product_id", "no such product")
        unit_price = line.unit_price if line.unit_price is not None else (product.unit_price if product else None)
        if unit_price is None:
            raise field_problem(f"{where}/unit_price", "a line needs a unit price (or a product)")
        check_amount(line.quantity, f"{where}/quantity")
        check_amount(unit_price, f"{where}/unit_price")
        if line.discount_value is not None:
            check_amount(line.discount_value, f"{where}/discount_value")
        description = line.description.strip() or (product.name if product else "")
        if not description:
            raise field_problem(f"{where}/description", "a line needs a description")
        tax_ids = line.tax_rate_ids
        if tax_ids is None:
            tax_ids = [UUID(str(t)) for t in product.tax_rate_ids] if product else []
        taxes = []
        for t, tax_id in enumerate(tax_ids):
            rate = rates.get(tax_id)
            if rate is None:
                raise field_problem(f"{where}/tax_rate_ids/{t}", "no such tax rate")
            taxes.append(_tax_snapshot(rate))
        built.append(
            InvoiceLine(
                position=i,
                product_id=line.product_id,
                description=description,
                quantity=line.quantity,
                unit=line.unit if line.unit is not None else (product.unit if product else ""),
                unit_price=unit_price,
                discount_kind=line.discount_kind,
                discount_value=line.discount_value if line.discount_kind else None,
                taxes=taxes,
            )
        )
        inputs.append(line_input(built[-1]))
    if discount_value is not None:
        check_amount(discount_value, "/discount_value")
    try:
        result = totals.compute(currency, inputs, discount_kind, discount_value if discount_kind else None)  # type: ignore[arg-type]
    except totals.TotalsError as exc:
        exc.field = exc.field.replace("lines", pointer.lstrip("/"), 1) if exc.field.startswith("lines") else exc.field
        raise problem_from_totals(exc) from None
    for line_row, lt in zip(built, result.lines, strict=True):
        line_row.amount, line_row.net, line_row.tax, line_row.total = lt.amount, lt.net, lt.tax, lt.total
    return built, result


def line_input(line: InvoiceLine) -> totals.LineInput:
    return totals.LineInput(
        quantity=line.quantity,
        unit_price=line.unit_price,
        taxes=tuple(
            totals.Tax(t["name"], Decimal(t["rate"]), bool(t["inclusive"]), t.get("category", "S")) for t in line.taxes
        ),
        discount_kind=line.discount_kind,  # type: ignore[arg-type]
        discount_value=line.discount_value,
    )


def apply_totals(invoice: Invoice, result: totals.InvoiceTotals) -> None:
    invoice.subtotal = result.subtotal
    invoice.discount_total = result.discount
    invoice.tax_total = result.tax
    invoice.included_tax_total = result.included_tax
    invoice.total = result.total
    invoice.tax_breakdown = [
        {
            "name": t.name,
            "rate": str(t.rate),
            "inclusive": t.inclusive,
            "category": t.category,
            "base": str(t.base),
            "amount": str(t.amount),
        }
        for t in result.tax_breakdown
    ]


async def _fill_draft(session: AsyncSession, invoice: Invoice, data: InvoiceIn) -> None:
    customer = await get_customer(session, data.customer_id)
    currency = check_currency(data.currency or customer.currency)
    lines, result = await build_lines(session, currency, data.lines, data.discount_kind, data.discount_value)
    invoice.customer_id = customer.id
    invoice.currency = currency
    invoice.discount_kind = data.discount_kind
    invoice.discount_value = data.discount_value if data.discount_kind else None
    invoice.notes = data.notes
    invoice.payment_terms_days = data.payment_terms_days
    apply_totals(invoice, result)
    # Added only once everything is checked: bad input leaves nothing pending in the session.
    session.add(invoice)
    await session.flush()
    for line in lines:
        line.invoice_id = invoice.id
        session.add(line)
    await session.flush()


async def preview(session: AsyncSession, data: InvoiceIn) -> tuple[Invoice, list[InvoiceLine]]:
    """An unsaved draft with its totals, and its lines, for an editor's live totals."""
    customer = await get_customer(session, data.customer_id)
    currency = check_currency(data.currency or customer.currency)
    lines, result = await build_lines(session, currency, data.lines, data.discount_kind, data.discount_value)
    invoice = Invoice(
        id=UUID(int=0),
        kind="invoice",
        status="draft",
        customer_id=customer.id,
        currency=currency,
        discount_kind=data.discount_kind,
        discount_value=data.discount_value if data.discount_kind else None,
        notes=data.notes,
        payment_terms_days=data.payment_terms_days,
        amount_paid=ZERO,
        credited_total=ZERO,
        customer_snapshot={},
    )
    apply_totals(invoice, result)
    for line in lines:
        line.id = UUID(int=line.position + 1)
    return invoice, lines


async def create_draft(session: AsyncSession, data: InvoiceIn, *, external_ref: str | None = None) -> Invoice:
    invoice = Invoice(status="draft", kind="invoice", external_ref=external_ref)
    await _fill_draft(session, invoice, data)
    return invoice


def _not_draft(invoice: Invoice) -> Problem:
    return Problem(
        409,
        "invoice-not-draft",
        f"The invoice is {invoice.status}: an issued invoice cannot change (issue a credit note instead).",
    )


async def replace_draft(session: AsyncSession, invoice_id: UUID, data: InvoiceIn) -> Invoice:
    invoice = await get_invoice(session, invoice_id, lock=True)
    if invoice.status != "draft":
        raise _not_draft(invoice)
    for line in await lines_of(session, invoice.id):
        await session.delete(line)
    await session.flush()
    await _fill_draft(session, invoice, data)
    return invoice


async def delete_draft(session: AsyncSession, invoice_id: UUID) -> None:
    invoice = await get_invoice(session, invoice_id, lock=True)
    if invoice.status != "draft":
        raise _not_draft(invoice)
    await session.delete(invoice)


async def next_number(session: AsyncSession, series: str, pattern: str, year: int) -> str:
    """Take the next number of ``series``: the counter row stays locked (SELECT ... FOR UPDATE) until the
    issuing transaction ends, so concurrent issues queue and a rolled-back issue gives its number back."""
    tenant_id = session.info["tenant_id"]
    period = pattern_period(pattern, year)
    key = (NumberCounter.series == series) & (NumberCounter.period == period)
    await session.execute(
        insert(NumberCounter)
        .values(tenant_id=tenant_id, series=series, period=period, last_value=0)
        .on_conflict_do_nothing()
    )
    last = (await session.execute(select(NumberCounter.last_value).where(key).with_for_update())).scalar_one()
    await session.execute(update(NumberCounter).where(key).values(last_value=last + 1))
    return format_number(pattern, year, last + 1)


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {
        "name": customer.name,
        "email": customer.email,
        "address_line1": customer.address_line1,
        "address_line2": customer.address_line2,
        "postal_code": customer.postal_code,
        "city": customer.city,
        "country": customer.country,
        "tax_id": customer.tax_id,
    }


async def _assign_number(session: AsyncSession, tenant: TenantInfo, invoice: Invoice, issue_date: dt.date) -> None:
    settings = await get_settings(session)
    if invoice.kind == "credit_note":
        series, pattern = CREDIT_NOTE_SERIES, settings.credit_note_pattern
    else:
        series, pattern = INVOICE_SERIES, settings.invoice_pattern
    invoice.number = await next_number(session, series, pattern, issue_date.year)
    invoice.issue_date = issue_date
    invoice.issued_at = utcnow()
    invoice.public_token = secrets.token_urlsafe(32)


async def issue(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, invoice_id: UUID, *, actor: str | None = None
) -> Invoice:
    """Give a draft its number, dates and customer snapshot; from now on it never changes.

    The number is taken last: the counter row stays locked until the transaction commits, so
    everything that can be done before (checks, the customer's snapshot) is done before.
    """
    invoice = await get_invoice(session, invoice_id, lock=True)
    if invoice.status != "draft":
        raise _not_draft(invoice)
    has_lines = await session.scalar(select(InvoiceLine.id).where(InvoiceLine.invoice_id == invoice.id).limit(1))
    if has_lines is None:
        raise field_problem("/lines", "an invoice without lines cannot be issued", code="invoice-empty")
    customer = await get_customer(session, invoice.customer_id)
    issue_date = formatting.today(tenant)
    terms = invoice.payment_terms_days if invoice.payment_terms_days is not None else customer.payment_terms_days
    invoice.payment_terms_days = terms
    invoice.due_date = issue_date + dt.timedelta(days=terms)
    invoice.customer_snapshot = _snapshot(customer)
    invoice.status = "issued"
    await _assign_number(session, tenant, invoice, issue_date)
    refresh_status(invoice)
    await session.flush()
    await publish(kernel, session, "erp.invoice.issued", invoice_event(invoice), actor=actor)
    return invoice


async def credit(
    kernel: Any,
    session: AsyncSession,
    tenant: TenantInfo,
    invoice_id: UUID,
    data: CreditNoteIn,
    *,
    actor: str | None = None,
) -> Invoice:
    """Issue a credit note against an issued invoice: it lowers what the customer owes."""
    original = await get_invoice(session, invoice_id, lock=True)
    if original.kind != "invoice" or original.status not in OPEN_STATES:
        raise Problem(409, "invoice-not-open", f"Only an open invoice can be credited; this one is {original.status}.")
    if data.lines is None:
        if original.amount_paid != 0 or original.credited_total != 0:
            raise field_problem("/lines", "name the lines to credit: the invoice is partly paid or credited")
        original_lines = await lines_of(session, original.id)
        lines_in = [
            LineIn(
                description=line.description,
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                product_id=None,
                tax_rate_ids=None,
                discount_kind=line.discount_kind,  # type: ignore[arg-type]
                discount_value=line.discount_value,
            )
            for line in original_lines
        ]
        lines, result = await build_lines(session, original.currency, lines_in, None, None)
        for line, source in zip(lines, original_lines, strict=True):
            line.taxes = list(source.taxes)
        inputs = [line_input(line) for line in lines]
        result = totals.compute(original.currency, inputs, original.discount_kind, original.discount_value)  # type: ignore[arg-type]
        for line_row, lt in zip(lines, result.lines, strict=True):
            line_row.amount, line_row.net, line_row.tax, line_row.total = lt.amount, lt.net, lt.tax, lt.total
    else:
        if not data.lines:
            raise field_problem("/lines", "a credit note needs at least one line")
        lines, result = await build_lines(session, original.currency, data.lines, None, None)
    if result.total > balance(original):
        raise field_problem(
            "/lines", "the credit note is larger than the invoice's open balance (refund payments first)"
        )
    note = Invoice(
        kind="credit_note",
        status="draft",
        customer_id=original.customer_id,
        currency=original.currency,
        credited_invoice_id=original.id,
        notes=data.reason,
        discount_kind=original.discount_kind if data.lines is None else None,
        discount_value=original.discount_value if data.lines is None else None,
    )
    apply_totals(note, result)
    session.add(note)
    await session.flush()
    for line in lines:
        line.invoice_id = note.id
        session.add(line)
    issue_date = formatting.today(tenant)
    await _assign_number(session, tenant, note, issue_date)
    note.due_date = issue_date
    note.customer_snapshot = dict(original.customer_snapshot)
    note.status = "issued"
    original.credited_total += note.total
    refresh_status(original)
    await session.flush()
    await publish(kernel, session, "erp.invoice.issued", invoice_event(note), actor=actor)
    return note


async def void(kernel: Any, session: AsyncSession, invoice_id: UUID, *, actor: str | None = None) -> Invoice:
    """Void an issued invoice nothing was paid or credited on; its number stays taken (no gap)."""
    invoice = await get_invoice(session, invoice_id, lock=True)
    if invoice.kind != "invoice" or invoice.status not in OPEN_STATES:
        raise Problem(409, "invoice-not-open", f"Only an open invoice can be voided; this one is {invoice.status}.")
    if invoice.amount_paid != 0 or invoice.credited_total != 0:
        raise Problem(409, "invoice-has-payments", "Refund its payments and credit notes before voiding an invoice.")
    invoice.status = "void"
    invoice.voided_at = utcnow()
    await session.flush()
    await publish(kernel, session, "erp.invoice.voided", invoice_event(invoice), actor=actor)
    return invoice


def public_path(invoice: Invoice) -> str | None:
    return f"/erp/pay/{invoice.public_token}" if invoice.public_token else None


async def send(
    kernel: Any,
    session: AsyncSession,
    tenant: TenantInfo,
    invoice_id: UUID,
    *,
    to: str | None = None,
    actor: str | None = None,
) -> Invoice:
    """Email the invoice to its customer: its link, with the Factur-X PDF attached (a PDF/A-3 that also
    carries the EN 16931 XML). The mail is queued in ``session``'s transaction: sent once it commits."""
    invoice = await get_invoice(session, invoice_id, lock=True)
    if invoice.status in ("draft", "void"):
        raise Problem(409, "invoice-not-issued", f"A {invoice.status} invoice cannot be sent.")
    address = check_email(to, "/to") if to else invoice.customer_snapshot.get("email", "")
    if not address:
        raise field_problem("/to", "the customer has no email address: give one", code="no-recipient")
    path = public_path(invoice)
    assert path is not None
    # The documents are built from invoices, so they are imported when first needed, not with this module.
    from inopsio_erp.documents.einvoice import facturx_pdf
    from inopsio_erp.documents.model import load_document

    locale = tenant.settings.locale
    invoice.sent_at = utcnow()
    document = await load_document(session, tenant, invoice)
    # Rendering is CPU work (tens of milliseconds): off the event loop, so other requests go on.
    pdf = await asyncio.to_thread(facturx_pdf, document)
    await kernel.mail.queue(
        session,
        tenant,
        to=address,
        template="erp/invoice",
        context={
            "customer_name": invoice.customer_snapshot.get("name", ""),
            "number": invoice.number,
            "total": formatting.money(invoice.total, invoice.currency, locale),
            "due_date": formatting.date(invoice.due_date, locale),
            "link": tenant_url(kernel, tenant, path),
        },
        attachments=[Attachment(filename=f"{invoice.number}.pdf", content_type="application/pdf", content=pdf)],
        actor=actor,
    )
    await session.flush()
    await publish(kernel, session, "erp.invoice.sent", invoice_event(invoice), actor=actor)
    return invoice


async def mark_overdue(kernel: Any, session: AsyncSession, today: dt.date) -> list[Invoice]:
    """Mark open invoices past their due date overdue, once each, publishing ``erp.invoice.overdue``."""
    query = (
        select(Invoice)
        .where(
            Invoice.kind == "invoice",
            Invoice.status.in_(("issued", "partially_paid")),
            Invoice.due_date < today,
            Invoice.overdue_since.is_(None),
        )
        .with_for_update(skip_locked=True)
    )
    marked = list((await session.execute(query)).scalars())
    for invoice in marked:
        invoice.overdue_since = today
        refresh_status(invoice)
    await session.flush()
    for invoice in marked:
        await publish(kernel, session, "erp.invoice.overdue", invoice_event(invoice))
    return marked


async def send_reminders(kernel: Any, session: AsyncSession, tenant: TenantInfo, today: dt.date) -> int:
    """Email a reminder for each overdue invoice that reached its next reminder day (settings'
    ``reminder_days`` after the due date). Each reminder goes once: its count is kept on the invoice
    and its mail is queued in the same transaction."""
    settings = await get_settings(session)
    thresholds = sorted(int(d) for d in settings.reminder_days)
    if not thresholds:
        return 0
    query = select(Invoice).where(Invoice.status == "overdue").with_for_update(skip_locked=True)
    sent = 0
    locale = tenant.settings.locale
    for invoice in (await session.execute(query)).scalars():
        if invoice.due_date is None:
            continue
        days = (today - invoice.due_date).days
        due = sum(1 for d in thresholds if d <= days)
        email = invoice.customer_snapshot.get("email", "")
        if due <= invoice.reminders_sent or not email:
            continue
        path = public_path(invoice)
        assert path is not None
        await kernel.mail.queue(
            session,
            tenant,
            to=email,
            template="erp/reminder",
            context={
                "customer_name": invoice.customer_snapshot.get("name", ""),
                "number": invoice.number,
                "due_date": formatting.date(invoice.due_date, locale),
                "balance": formatting.money(balance(invoice), invoice.currency, locale),
                "days_overdue": days,
                "link": tenant_url(kernel, tenant, path),
            },
        )
        invoice.reminders_sent = due
        sent += 1
    await session.flush()
    return sent


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Invoice.status, func.count()).group_by(Invoice.status))
    return {str(status): int(count) for status, count in rows.all()}


def invoice_in_from_json(body: dict[str, Any]) -> InvoiceIn:
    return msgspec.convert(body, InvoiceIn)
