"""Everything printed on an invoice, gathered once from the database for the PDF and the e-invoices."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp.company import get_settings
from inopsio_erp.invoices import services as invoices
from inopsio_erp.models import Invoice


@dataclass(frozen=True)
class Party:
    name: str
    address_lines: tuple[str, ...] = ()
    postal_code: str = ""
    city: str = ""
    country: str = ""
    tax_id: str = ""
    email: str = ""


@dataclass(frozen=True)
class DocumentLine:
    position: int
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    discount: str
    taxes: tuple[dict[str, Any], ...]
    amount: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class InvoiceDocument:
    kind: str  # invoice, credit_note
    number: str
    issue_date: dt.date
    due_date: dt.date | None
    currency: str
    locale: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    included_tax: Decimal
    total: Decimal
    paid: Decimal
    balance: Decimal
    tax_breakdown: tuple[dict[str, Any], ...]
    notes: str = ""
    credited_number: str | None = None
    template: str = "classic"
    color: str = "#1f6feb"
    logo_png: bytes | None = None
    bank_details: str = ""
    iban: str = ""
    bic: str = ""
    footer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _logo(url: str) -> bytes | None:
    """Only an inline PNG is drawn: fetching a URL while rendering would let a tenant make the server call
    any address."""
    prefix = "data:image/png;base64,"
    if url.startswith(prefix):
        try:
            return base64.b64decode(url[len(prefix) :], validate=True)
        except ValueError:
            return None
    return None


async def load_document(
    session: AsyncSession, tenant: TenantInfo, invoice: Invoice, *, template: str | None = None
) -> InvoiceDocument:
    if invoice.number is None or invoice.issue_date is None:
        raise ValueError("only an issued invoice has a document")
    settings = await get_settings(session)
    lines = await invoices.lines_of(session, invoice.id)
    snapshot = invoice.customer_snapshot
    credited_number = None
    if invoice.credited_invoice_id is not None:
        credited_number = (await invoices.get_invoice(session, invoice.credited_invoice_id)).number
    seller = Party(
        name=settings.company_name or tenant.settings.display_name or tenant.name,
        address_lines=tuple(line for line in settings.address.splitlines() if line.strip()),
        country=settings.country,
        tax_id=settings.tax_id,
        email=settings.email,
    )
    buyer = Party(
        name=snapshot.get("name", ""),
        address_lines=tuple(x for x in (snapshot.get("address_line1", ""), snapshot.get("address_line2", "")) if x),
        postal_code=snapshot.get("postal_code", ""),
        city=snapshot.get("city", ""),
        country=snapshot.get("country", ""),
        tax_id=snapshot.get("tax_id", ""),
        email=snapshot.get("email", ""),
    )

    def discount_text(line: Any) -> str:
        if not line.discount_kind or not line.discount_value:
            return ""
        return f"{line.discount_value.normalize():f} %" if line.discount_kind == "percent" else "fixed"

    return InvoiceDocument(
        kind=invoice.kind,
        number=invoice.number,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        currency=invoice.currency,
        locale=tenant.settings.locale,
        seller=seller,
        buyer=buyer,
        lines=tuple(
            DocumentLine(
                position=line.position + 1,
                description=line.description,
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                discount=discount_text(line),
                taxes=tuple(line.taxes),
                amount=line.amount,
                net=line.net,
                tax=line.tax,
                total=line.total,
            )
            for line in lines
        ),
        subtotal=invoice.subtotal,
        discount=invoice.discount_total,
        tax=invoice.tax_total,
        included_tax=invoice.included_tax_total,
        total=invoice.total,
        paid=invoice.amount_paid,
        balance=invoices.balance(invoice) if invoice.kind == "invoice" else Decimal(0),
        tax_breakdown=tuple(invoice.tax_breakdown),
        notes=invoice.notes,
        credited_number=credited_number,
        template=template or settings.pdf_template,
        color=settings.color or "#1f6feb",
        logo_png=_logo(settings.logo_url),
        bank_details=settings.bank_details,
        iban=settings.iban,
        bic=settings.bic,
        footer=settings.footer,
    )
