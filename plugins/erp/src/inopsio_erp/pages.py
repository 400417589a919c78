"""The ERP's pages in the web shell: invoices (list, editor with live totals, detail with actions),
customers, and the receivables dashboard card. Pages only read; every change is an API call made by
the shell's script (or the editor's), so a page can never do what the API would refuse."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy import func, select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.web import fragment, page
from inopsio_erp.company import get_settings
from inopsio_erp.invoices import services as invoices
from inopsio_erp.models import Customer, Invoice, Payment, Product, TaxRate
from inopsio_erp.public import STATUS_LABELS

STATES = ("draft", "issued", "partially_paid", "overdue", "paid", "credited", "void")


@get("/erp/invoices", opt={"permission": "erp.invoices.read"}, include_in_schema=False)
async def invoices_page(
    request: Request[Any, Any, Any],
    db_session: DbSession,
    status: Annotated[
        str | None, QueryParameter(pattern=r"^(draft|issued|partially_paid|overdue|paid|credited|void)$")
    ] = None,
) -> Response[str]:
    query = (
        select(Invoice, Customer.name)
        .join(Customer, (Customer.id == Invoice.customer_id) & (Customer.tenant_id == Invoice.tenant_id))
        .order_by(Invoice.created_at.desc(), Invoice.id.desc())
        .limit(200)
    )
    if status:
        query = query.where(Invoice.status == status)
    rows = [
        {"invoice": invoice, "customer": name, "balance": invoices.balance(invoice)}
        for invoice, name in (await db_session.execute(query)).all()
    ]
    return await page(
        request,
        "erp/pages/invoices.html",
        {"rows": rows, "status": status, "states": STATES, "labels": STATUS_LABELS | {"draft": "Draft"}},
    )


async def _editor(request: Request[Any, Any, Any], db_session: Any, invoice: Invoice | None) -> Response[str]:
    customers = (await db_session.execute(select(Customer).order_by(Customer.name).limit(500))).scalars().all()
    rates = (
        (await db_session.execute(select(TaxRate).where(TaxRate.active.is_(True)).order_by(TaxRate.name)))
        .scalars()
        .all()
    )
    products = (
        (await db_session.execute(select(Product).where(Product.active.is_(True)).order_by(Product.name)))
        .scalars()
        .all()
    )
    lines = list(await invoices.lines_of(db_session, invoice.id)) if invoice else []
    return await page(
        request,
        "erp/pages/editor.html",
        {"invoice": invoice, "lines": lines, "customers": customers, "rates": rates, "products": products},
    )


@get("/erp/invoices/new", opt={"permission": "erp.invoices.write"}, include_in_schema=False)
async def new_invoice_page(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    return await _editor(request, db_session, None)


@get("/erp/invoices/{invoice_id:uuid}", opt={"permission": "erp.invoices.read"}, include_in_schema=False)
async def invoice_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    invoice_id: FromPath[UUID],
) -> Response[str]:
    invoice = await invoices.get_invoice(db_session, invoice_id)
    if invoice.status == "draft":
        return await _editor(request, db_session, invoice)
    lines = await invoices.lines_of(db_session, invoice.id)
    payments = (
        (await db_session.execute(select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.created_at)))
        .scalars()
        .all()
    )
    notes = (
        (
            await db_session.execute(
                select(Invoice).where(Invoice.credited_invoice_id == invoice.id).order_by(Invoice.created_at)
            )
        )
        .scalars()
        .all()
    )
    path = invoices.public_path(invoice)
    return await page(
        request,
        "erp/pages/invoice.html",
        {
            "invoice": invoice,
            "lines": lines,
            "payments": payments,
            "credit_notes": notes,
            "balance": invoices.balance(invoice),
            "is_open": invoice.kind == "invoice" and invoice.status in invoices.OPEN_STATES,
            "public_path": path,
            "label": STATUS_LABELS.get(invoice.status, invoice.status),
            "stripe": bool((await get_settings(db_session)).stripe_secret_key),
        },
    )


@get("/erp/customers", opt={"permission": "erp.customers.read"}, include_in_schema=False)
async def customers_page(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    balance = func.coalesce(
        func.sum(Invoice.total - Invoice.credited_total - Invoice.amount_paid).filter(
            Invoice.kind == "invoice", Invoice.status.in_(invoices.OPEN_STATES)
        ),
        0,
    )
    query = (
        select(Customer, balance)
        .outerjoin(Invoice, (Invoice.customer_id == Customer.id) & (Invoice.tenant_id == Customer.tenant_id))
        .group_by(Customer.tenant_id, Customer.id)
        .order_by(Customer.name)
        .limit(500)
    )
    rows = [{"customer": c, "open": Decimal(b)} for c, b in (await db_session.execute(query)).all()]
    return await page(request, "erp/pages/customers.html", {"rows": rows})


@get("/erp/cards/receivables", opt={"permission": "erp.invoices.read"}, include_in_schema=False)
async def receivables_card(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    open_amount = Invoice.total - Invoice.credited_total - Invoice.amount_paid
    query = (
        select(
            Invoice.currency,
            func.sum(open_amount),
            func.count(),
            func.count().filter(Invoice.status == "overdue"),
            func.coalesce(func.sum(open_amount).filter(Invoice.status == "overdue"), 0),
        )
        .where(Invoice.kind == "invoice", Invoice.status.in_(invoices.OPEN_STATES))
        .group_by(Invoice.currency)
        .order_by(Invoice.currency)
    )
    rows = [
        {"currency": c, "open": Decimal(o), "count": n, "overdue_count": od, "overdue": Decimal(oa)}
        for c, o, n, od, oa in (await db_session.execute(query)).all()
    ]
    drafts = await db_session.scalar(select(func.count()).select_from(Invoice).where(Invoice.status == "draft"))
    return await fragment(request, "erp/pages/card.html", {"rows": rows, "drafts": drafts or 0})
