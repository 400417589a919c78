"""``/api/v1/erp/reports/...``: receivables ageing, revenue by month and by customer, as JSON or CSV.

Revenue counts issued invoices less issued credit notes (by issue date), per currency: amounts in
different currencies are never added together.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, get
from litestar.params import QueryParameter
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.deps import CurrentTenant, DbSession
from inopsio_erp import formatting
from inopsio_erp.invoices.services import OPEN_STATES
from inopsio_erp.models import Customer, Invoice
from inopsio_erp.totals import minor_unit
from inopsio_erp.validation import field_problem

BUCKETS = ("current", "1_30", "31_60", "61_90", "over_90")
Format = Annotated[Literal["json", "csv"], QueryParameter()]


class AgeingRow(msgspec.Struct, kw_only=True):
    customer_id: str
    customer: str
    currency: str
    current: Decimal
    days_1_30: Decimal
    days_31_60: Decimal
    days_61_90: Decimal
    over_90: Decimal
    total: Decimal


class RevenueRow(msgspec.Struct, kw_only=True):
    key: str
    label: str
    currency: str
    invoices: int
    net: Decimal
    tax: Decimal
    total: Decimal


def _bucket(days: int) -> str:
    if days <= 0:
        return "current"
    if days <= 30:
        return "1_30"
    if days <= 60:
        return "31_60"
    if days <= 90:
        return "61_90"
    return "over_90"


async def ageing(session: AsyncSession, as_of: dt.date) -> list[AgeingRow]:
    balance = Invoice.total - Invoice.credited_total - Invoice.amount_paid
    query = (
        select(Invoice.customer_id, Customer.name, Invoice.currency, Invoice.due_date, balance.label("balance"))
        .join(Customer, (Customer.id == Invoice.customer_id) & (Customer.tenant_id == Invoice.tenant_id))
        .where(Invoice.kind == "invoice", Invoice.status.in_(OPEN_STATES), Invoice.issue_date <= as_of)
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for customer_id, name, currency, due_date, open_amount in (await session.execute(query)).all():
        key = (str(customer_id), currency)
        row = rows.setdefault(key, {"customer": name, **{b: Decimal(0) for b in BUCKETS}})
        row[_bucket((as_of - due_date).days if due_date else 0)] += open_amount
    out = []
    for (customer_id, currency), row in sorted(rows.items(), key=lambda item: (item[1]["customer"], item[0])):
        unit = minor_unit(currency)
        values = {b: row[b].quantize(unit) for b in BUCKETS}
        out.append(
            AgeingRow(
                customer_id=customer_id,
                customer=row["customer"],
                currency=currency,
                current=values["current"],
                days_1_30=values["1_30"],
                days_31_60=values["31_60"],
                days_61_90=values["61_90"],
                over_90=values["over_90"],
                total=sum(values.values(), Decimal(0)),
            )
        )
    return out


async def revenue(session: AsyncSession, by: str, start: dt.date, end: dt.date) -> list[RevenueRow]:
    sign = case((Invoice.kind == "credit_note", -1), else_=1)
    net = func.sum(sign * (Invoice.total - Invoice.tax_total - Invoice.included_tax_total))
    tax = func.sum(sign * (Invoice.tax_total + Invoice.included_tax_total))
    total = func.sum(sign * Invoice.total)
    count = func.count().filter(Invoice.kind == "invoice")
    where = (Invoice.status.notin_(("draft", "void")), Invoice.issue_date >= start, Invoice.issue_date <= end)
    if by == "month":
        month = func.to_char(Invoice.issue_date, "YYYY-MM")
        query = (
            select(month, month, Invoice.currency, count, net, tax, total)
            .where(*where)
            .group_by(month, Invoice.currency)
            .order_by(month, Invoice.currency)
        )
    else:
        query = (
            select(Invoice.customer_id, Customer.name, Invoice.currency, count, net, tax, total)
            .join(Customer, (Customer.id == Invoice.customer_id) & (Customer.tenant_id == Invoice.tenant_id))
            .where(*where)
            .group_by(Invoice.customer_id, Customer.name, Invoice.currency)
            .order_by(total.desc(), Customer.name)
        )
    return [
        RevenueRow(
            key=str(key),
            label=str(label),
            currency=currency,
            invoices=int(n),
            net=Decimal(a).quantize(minor_unit(currency)),
            tax=Decimal(b).quantize(minor_unit(currency)),
            total=Decimal(c).quantize(minor_unit(currency)),
        )
        for key, label, currency, n, a, b, c in (await session.execute(query)).all()
    ]


def _csv(rows: list[Any], filename: str) -> Response[bytes]:
    buffer = io.StringIO()
    fields = list(msgspec.structs.asdict(rows[0]).keys()) if rows else []
    writer = csv.writer(buffer)
    if fields:
        writer.writerow(fields)
    for row in rows:
        # A leading = + - @ would make a spreadsheet evaluate the cell: customer names are data.
        writer.writerow(
            [f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v for v in msgspec.structs.astuple(row)]
        )
    return Response(
        buffer.getvalue().encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _period(start: dt.date | None, end: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    end = end or today
    start = start or dt.date(end.year, 1, 1)
    if start > end:
        raise field_problem("/from", "the period starts after it ends")
    return start, end


@get("/api/v1/erp/reports/ageing", opt={"permission": "erp.reports.read"}, tags=["erp"])
async def ageing_report(
    db_session: DbSession,
    tenant: CurrentTenant,
    as_of: Annotated[dt.date | None, QueryParameter()] = None,
    format: Format = "json",
) -> Any:
    """Open receivables per customer and currency, by days past due: current, 1-30, 31-60, 61-90, over 90."""
    rows = await ageing(db_session, as_of or formatting.today(tenant))
    return _csv(rows, "receivables-ageing") if format == "csv" else rows


@get("/api/v1/erp/reports/revenue", opt={"permission": "erp.reports.read"}, tags=["erp"])
async def revenue_report(
    db_session: DbSession,
    tenant: CurrentTenant,
    by: Annotated[Literal["month", "customer"], QueryParameter()] = "month",
    start: Annotated[dt.date | None, QueryParameter(query="from")] = None,
    end: Annotated[dt.date | None, QueryParameter(query="to")] = None,
    format: Format = "json",
) -> Any:
    """Invoiced revenue less credit notes, by issue month or by customer, per currency (default: this year)."""
    first, last = _period(start, end, formatting.today(tenant))
    rows = await revenue(db_session, by, first, last)
    return _csv(rows, f"revenue-by-{by}") if format == "csv" else rows
