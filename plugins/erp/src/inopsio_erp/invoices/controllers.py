"""``/api/v1/erp/invoices``: drafts, issuing, credit notes, voiding, sending; ``/api/v1/erp/recurring``."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio.identity.principal import principal_of
from inopsio.tenancy.addresses import tenant_url
from inopsio_erp.catalog.services import get_customer
from inopsio_erp.invoices import services
from inopsio_erp.invoices.schemas import (
    CreditNoteIn,
    InvoiceIn,
    InvoiceOut,
    InvoiceSummary,
    LineOut,
    RecurringIn,
    RecurringOut,
    SendIn,
)
from inopsio_erp.models import Invoice, InvoiceLine, RecurringTemplate
from inopsio_erp.totals import minor_unit

Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Offset = Annotated[int, QueryParameter(ge=0)]
StatusFilter = Annotated[
    str | None,
    QueryParameter(pattern=r"^(draft|issued|partially_paid|paid|overdue|void|credited)$"),
]


def actor_of(request: Request[Any, Any, Any]) -> str | None:
    principal = principal_of(request.scope)
    if principal is None:
        return None
    return f"user:{principal.user_id}" if principal.kind == "user" else f"api_key:{principal.api_key_id}"


def line_out(line: InvoiceLine, currency: str) -> LineOut:
    unit = minor_unit(currency)
    return LineOut(
        id=line.id,
        position=line.position,
        description=line.description,
        quantity=line.quantity,
        unit=line.unit,
        unit_price=line.unit_price,
        product_id=line.product_id,
        discount_kind=line.discount_kind,
        discount_value=line.discount_value,
        taxes=list(line.taxes),
        amount=line.amount.quantize(unit),
        net=line.net.quantize(unit),
        tax=line.tax.quantize(unit),
        total=line.total.quantize(unit),
    )


def invoice_out(kernel: Any, tenant: Any, invoice: Invoice, lines: list[InvoiceLine] | None = None) -> InvoiceOut:
    path = services.public_path(invoice)
    unit = minor_unit(invoice.currency)
    return InvoiceOut(
        id=invoice.id,
        kind=invoice.kind,
        status=invoice.status,
        number=invoice.number,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        payment_terms_days=invoice.payment_terms_days,
        discount_kind=invoice.discount_kind,
        discount_value=invoice.discount_value,
        notes=invoice.notes,
        subtotal=invoice.subtotal.quantize(unit),
        discount_total=invoice.discount_total.quantize(unit),
        tax_total=invoice.tax_total.quantize(unit),
        included_tax_total=invoice.included_tax_total.quantize(unit),
        total=invoice.total.quantize(unit),
        amount_paid=invoice.amount_paid.quantize(unit),
        credited_total=invoice.credited_total.quantize(unit),
        balance=services.balance(invoice).quantize(unit),
        tax_breakdown=list(invoice.tax_breakdown),
        customer=dict(invoice.customer_snapshot),
        credited_invoice_id=invoice.credited_invoice_id,
        public_url=tenant_url(kernel, tenant, path) if path else None,
        issued_at=invoice.issued_at,
        sent_at=invoice.sent_at,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        overdue_since=invoice.overdue_since,
        lines=[line_out(line, invoice.currency) for line in lines] if lines is not None else None,
    )


async def full_out(kernel: Any, tenant: Any, session: AsyncSession, invoice: Invoice) -> InvoiceOut:
    return invoice_out(kernel, tenant, invoice, list(await services.lines_of(session, invoice.id)))


class InvoiceController(Controller):
    path = "/api/v1/erp/invoices"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.invoices.write"})
    async def create_invoice(
        self, kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession, data: JSONBody[InvoiceIn]
    ) -> InvoiceOut:
        """A draft invoice; its totals are computed from the lines."""
        invoice = await services.create_draft(db_session, data)
        return await full_out(kernel, tenant, db_session, invoice)

    @post("/preview", opt={"permission": "erp.invoices.write"}, status_code=200)
    async def preview_invoice(
        self, kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession, data: JSONBody[InvoiceIn]
    ) -> InvoiceOut:
        """The totals a draft with these lines would have, computed by the same engine; nothing is stored."""
        invoice, lines = await services.preview(db_session, data)
        return invoice_out(kernel, tenant, invoice, lines)

    @get("/", opt={"permission": "erp.invoices.read"})
    async def list_invoices(
        self,
        db_session: DbSession,
        status: StatusFilter = None,
        customer_id: Annotated[UUID | None, QueryParameter()] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[InvoiceSummary]:
        query = select(Invoice).order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit).offset(offset)
        if status:
            query = query.where(Invoice.status == status)
        if customer_id:
            query = query.where(Invoice.customer_id == customer_id)
        return [
            InvoiceSummary(
                id=i.id,
                kind=i.kind,
                status=i.status,
                number=i.number,
                customer_id=i.customer_id,
                currency=i.currency,
                issue_date=i.issue_date,
                due_date=i.due_date,
                total=i.total.quantize(minor_unit(i.currency)),
                balance=services.balance(i).quantize(minor_unit(i.currency)),
            )
            for i in (await db_session.execute(query)).scalars()
        ]

    @get("/{invoice_id:uuid}", opt={"permission": "erp.invoices.read"})
    async def get_invoice(
        self, kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession, invoice_id: FromPath[UUID]
    ) -> InvoiceOut:
        return await full_out(kernel, tenant, db_session, await services.get_invoice(db_session, invoice_id))

    @put("/{invoice_id:uuid}", opt={"permission": "erp.invoices.write"})
    async def replace_invoice(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
        data: JSONBody[InvoiceIn],
    ) -> InvoiceOut:
        """Replace a draft's lines and fields; 409 once it is issued."""
        invoice = await services.replace_draft(db_session, invoice_id, data)
        return await full_out(kernel, tenant, db_session, invoice)

    @delete("/{invoice_id:uuid}", opt={"permission": "erp.invoices.write"})
    async def delete_invoice(self, db_session: DbSession, invoice_id: FromPath[UUID]) -> None:
        await services.delete_draft(db_session, invoice_id)

    @post("/{invoice_id:uuid}/issue", opt={"permission": "erp.invoices.issue"}, status_code=200)
    async def issue_invoice(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
    ) -> InvoiceOut:
        """Number the draft (gapless per series), date it and freeze it."""
        # The lines are read before the number is taken: after it, the counter row is locked until commit.
        lines = list(await services.lines_of(db_session, invoice_id))
        invoice = await services.issue(kernel, db_session, tenant, invoice_id, actor=actor_of(request))
        return invoice_out(kernel, tenant, invoice, lines)

    @post("/{invoice_id:uuid}/send", opt={"permission": "erp.invoices.issue"}, status_code=200)
    async def send_invoice(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
        data: JSONBody[SendIn | None] = None,
    ) -> InvoiceOut:
        """Email the customer a link to the invoice (page, PDF and Pay button)."""
        to = data.to if data else None
        invoice = await services.send(kernel, db_session, tenant, invoice_id, to=to, actor=actor_of(request))
        return invoice_out(kernel, tenant, invoice)

    @post("/{invoice_id:uuid}/credit-notes", opt={"permission": "erp.invoices.issue"})
    async def credit_invoice(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
        data: JSONBody[CreditNoteIn],
    ) -> InvoiceOut:
        """Issue a credit note: the whole invoice when no lines are given."""
        note = await services.credit(kernel, db_session, tenant, invoice_id, data, actor=actor_of(request))
        return await full_out(kernel, tenant, db_session, note)

    @post("/{invoice_id:uuid}/void", opt={"permission": "erp.invoices.void"}, status_code=200)
    async def void_invoice(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
    ) -> InvoiceOut:
        invoice = await services.void(kernel, db_session, invoice_id, actor=actor_of(request))
        return invoice_out(kernel, tenant, invoice)


def recurring_out(t: RecurringTemplate) -> RecurringOut:
    return RecurringOut(
        id=t.id,
        customer_id=t.customer_id,
        interval=t.interval,
        next_run=t.next_run,
        send_email=t.send_email,
        active=t.active,
        runs=t.runs,
        invoice=dict(t.body),
    )


class RecurringController(Controller):
    path = "/api/v1/erp/recurring"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.invoices.write"})
    async def create_recurring(self, db_session: DbSession, data: JSONBody[RecurringIn]) -> RecurringOut:
        """A template that issues (and emails) an invoice on ``start_on`` and every interval after."""
        await get_customer(db_session, data.invoice.customer_id)
        # Check the body once now, exactly as each run will build it; nothing is kept.
        async with db_session.begin_nested() as check:
            await services.create_draft(db_session, data.invoice)
            await check.rollback()
        template = RecurringTemplate(
            customer_id=data.invoice.customer_id,
            interval=data.interval,
            start_on=data.start_on,
            next_run=data.start_on,
            body=msgspec.to_builtins(data.invoice),
            send_email=data.send_email,
            active=data.active,
        )
        db_session.add(template)
        await db_session.flush()
        return recurring_out(template)

    @get("/", opt={"permission": "erp.invoices.read"})
    async def list_recurring(self, db_session: DbSession) -> list[RecurringOut]:
        rows = (await db_session.execute(select(RecurringTemplate).order_by(RecurringTemplate.next_run))).scalars()
        return [recurring_out(t) for t in rows]

    @delete("/{template_id:uuid}", opt={"permission": "erp.invoices.write"})
    async def delete_recurring(self, db_session: DbSession, template_id: FromPath[UUID]) -> None:
        template = await db_session.get(RecurringTemplate, (db_session.info["tenant_id"], template_id))
        if template is None:
            raise Problem(404, "not-found", "No such recurring invoice.")
        await db_session.delete(template)
