"""Demo data for ``inopsio serve --demo``: the issuer's details, tax rates, products, customers and
invoices in every state (draft, issued, partially paid, paid, overdue, credited, void).

Deterministic: the same names, lines and amounts every time; dates relative to the day it runs.
No events are published for it (the demo's history is data, not news).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inopsio_erp import formatting
from inopsio_erp.company import get_settings
from inopsio_erp.invoices import services as invoices
from inopsio_erp.invoices.schemas import CreditNoteIn, InvoiceIn, LineIn
from inopsio_erp.models import Customer, Invoice, Product, TaxRate
from inopsio_erp.payments import services as payments

D = Decimal


async def _issued(
    session: AsyncSession, tenant: Any, customer: Customer, lines: list[LineIn], days_ago: int
) -> Invoice:
    draft = await invoices.create_draft(session, InvoiceIn(customer_id=customer.id, lines=lines))
    invoice = await invoices.issue(None, session, tenant, draft.id)
    invoice.issue_date = formatting.today(tenant) - dt.timedelta(days=days_ago)
    invoice.due_date = invoice.issue_date + dt.timedelta(days=customer.payment_terms_days)
    return invoice


async def seed(tenant: Any, session: AsyncSession) -> None:
    settings = await get_settings(session)
    settings.company_name = tenant.settings.display_name or tenant.name
    settings.address = "Example Street 1\n10115 Berlin"
    settings.country = "DE"
    settings.email = "billing@demo.example.com"
    settings.bank_details = "Demo Bank"
    settings.iban = "DE89370400440532013000"
    settings.bic = "COBADEFFXXX"
    settings.footer = "Thank you for your business."
    vat = TaxRate(name="VAT 20%", rate=D(20), inclusive=False, category="S")
    reduced = TaxRate(name="VAT 7%", rate=D(7), inclusive=False, category="S")
    included = TaxRate(name="VAT 19% incl.", rate=D(19), inclusive=True, category="S")
    session.add_all([vat, reduced, included])
    await session.flush()
    session.add_all(
        [
            Product(name="Consulting hour", unit="h", unit_price=D("120"), currency="EUR", tax_rate_ids=[str(vat.id)]),
            Product(name="Support plan", unit="month", unit_price=D("49"), currency="EUR", tax_rate_ids=[str(vat.id)]),
            Product(name="Workshop day", unit="day", unit_price=D("950"), currency="EUR", tax_rate_ids=[str(vat.id)]),
            Product(name="Handbook", unit="pc", unit_price=D("29.90"), currency="EUR", tax_rate_ids=[str(reduced.id)]),
        ]
    )
    people = [
        Customer(
            name="Northwind Traders GmbH",
            email="ap@northwind.example",
            address_line1="Hafenstraße 5",
            postal_code="20457",
            city="Hamburg",
            country="DE",
            tax_id="DE136695976",
            currency="EUR",
            payment_terms_days=14,
        ),
        Customer(
            name="Globex SARL",
            email="compta@globex.example",
            address_line1="12 rue de la Paix",
            postal_code="75002",
            city="Paris",
            country="FR",
            tax_id="FR40303265045",
            currency="EUR",
            payment_terms_days=30,
        ),
        Customer(
            name="Initech Inc.",
            email="payables@initech.example",
            address_line1="4120 Freidrich Ln",
            postal_code="78744",
            city="Austin",
            country="US",
            currency="USD",
            payment_terms_days=30,
        ),
        Customer(
            name="Contoso Ltd",
            email="accounts@contoso.example",
            address_line1="1 Market Street",
            postal_code="EC1A 1BB",
            city="London",
            country="GB",
            currency="EUR",
            payment_terms_days=14,
        ),
    ]
    session.add_all(people)
    await session.flush()
    northwind, globex, initech, contoso = people

    def line(description: str, quantity: str, price: str, *taxes: TaxRate, unit: str = "") -> LineIn:
        return LineIn(
            description=description,
            quantity=D(quantity),
            unit=unit,
            unit_price=D(price),
            tax_rate_ids=[t.id for t in taxes],
        )

    await invoices.create_draft(
        session,
        InvoiceIn(
            customer_id=northwind.id,
            notes="Draft for next month's work.",
            lines=[line("Consulting", "12", "120", vat, unit="h"), line("Handbook", "3", "29.90", reduced)],
        ),
    )
    await _issued(session, tenant, globex, [line("Workshop day", "2", "950", vat, unit="day")], days_ago=3)
    partial = await _issued(
        session, tenant, initech, [line("Implementation", "1", "4800", unit="project")], days_ago=10
    )
    await payments.record_payment(
        None, session, tenant, partial.id, amount=D("1500.00"), method="bank_transfer", reference="Wire 7781"
    )
    paid = await _issued(session, tenant, northwind, [line("Support plan", "12", "49", vat, unit="month")], days_ago=40)
    await payments.record_payment(
        None, session, tenant, paid.id, amount=paid.total, method="bank_transfer", reference="SEPA 2231"
    )
    await _issued(
        session,
        tenant,
        contoso,
        [line("Consulting", "6", "120", vat, unit="h"), line("Training (price incl. VAT)", "1", "595", included)],
        days_ago=45,
    )
    credited = await _issued(session, tenant, globex, [line("Workshop day (cancelled)", "1", "950", vat)], days_ago=20)
    await invoices.credit(None, session, tenant, credited.id, CreditNoteIn(reason="Workshop cancelled"))
    voided = await _issued(session, tenant, northwind, [line("Duplicate entry", "1", "100", vat)], days_ago=15)
    await invoices.void(None, session, voided.id)
    await invoices.mark_overdue(None, session, formatting.today(tenant))
