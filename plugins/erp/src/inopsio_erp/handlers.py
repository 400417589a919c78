"""Reactions to other modules' events, matched by type name only (the ERP never imports them).

``crm.deal.won``: the CRM's deal was won, so the customer is created if needed and a draft invoice
is written from the deal. Payload fields relied on (all optional except ``deal_id``; see
docs/erp.md): ``deal_id``, ``title``, ``value``, ``currency``, ``company_name``, ``contact_name``,
``contact_email``.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from inopsio.errors import Problem
from inopsio.events.schemas import DomainEvent
from inopsio_erp.company import get_settings
from inopsio_erp.invoices import services as invoices
from inopsio_erp.invoices.schemas import InvoiceIn, LineIn
from inopsio_erp.models import Customer, Invoice
from inopsio_erp.totals import currencies, minor_unit
from inopsio_erp.validation import check_email

log = logging.getLogger("inopsio_erp.handlers")


def _text(data: dict[str, Any], key: str, limit: int = 200) -> str:
    value = data.get(key)
    return str(value).strip()[:limit] if isinstance(value, str | int | float) and str(value).strip() else ""


def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


async def _customer_for(session: Any, tenant: Any, data: dict[str, Any], currency: str | None) -> Customer:
    company, contact = _text(data, "company_name"), _text(data, "contact_name")
    try:
        email = check_email(_text(data, "contact_email", 320))
    except Problem:
        email = ""
    name = company or contact or email or "Customer of deal " + _text(data, "title", 100)
    key = (company or email or contact or f"deal:{data['deal_id']}").lower()
    ref = f"crm:{'company' if company else 'contact'}:{key}"[:200]
    customer = (await session.execute(select(Customer).where(Customer.external_ref == ref))).scalar_one_or_none()
    if customer is None:
        settings = await get_settings(session)
        customer = Customer(
            name=name,
            email=email,
            currency=currency or tenant.settings.currency,
            payment_terms_days=settings.default_payment_terms_days,
            external_ref=ref,
        )
        session.add(customer)
        await session.flush()
    elif email and not customer.email:
        customer.email = email
    return customer


async def invoice_from_won_deal(event: DomainEvent, ctx: dict[str, Any]) -> None:
    """A draft invoice (and the customer if new) from a won CRM deal; once per deal."""
    data, session, kernel = event.data, ctx["session"], ctx["kernel"]
    deal_id = _text(data, "deal_id")
    if not deal_id:
        log.warning("crm.deal.won %s has no deal_id: no invoice", event.id)
        return
    ref = f"crm:deal:{deal_id}"[:200]
    if (await session.execute(select(Invoice.id).where(Invoice.external_ref == ref))).first() is not None:
        return
    tenant = await kernel.tenants.get(event.tenant_id)
    currency = _text(data, "currency").upper() or None
    if currency not in currencies():
        currency = None
    customer = await _customer_for(session, tenant, data, currency)
    currency = currency or customer.currency
    value = _amount(data.get("value")) or Decimal(0)
    title = _text(data, "title", 2000) or f"Deal {deal_id}"
    body = InvoiceIn(
        customer_id=customer.id,
        currency=currency,
        lines=[LineIn(description=title, quantity=Decimal(1), unit_price=value.quantize(minor_unit(currency)))],
        notes=f"From CRM deal {title}",
    )
    draft = await invoices.create_draft(session, body, external_ref=ref)
    log.info("draft invoice %s for won deal %s", draft.id, deal_id)
