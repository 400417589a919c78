"""The ERP plugin's tables: settings, customers, catalogue, tax rates, invoices and their lines,
number counters, payments, Stripe events and recurring templates. Every table is tenant-owned."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Boolean, Date, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db import Base, TenantOwned, TenantScoped, Timestamped, tenant_foreign_key, tenant_table_args

#: Quantities, prices and amounts: NUMERIC wide enough for any ISO 4217 currency (up to 4 minor digits)
#: and fractional quantities or unit prices (6 digits).
Money = Numeric(20, 6)


class ErpSettings(TenantScoped, Timestamped, Base):
    """One row per tenant: the issuer's details printed on invoices, numbering and payment settings."""

    __tablename__ = "erp_settings"

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"reminder_days": [7], "stripe_payment_methods": ["card"]}

    company_name: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(Text, default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    tax_id: Mapped[str] = mapped_column(String(50), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    bank_details: Mapped[str] = mapped_column(Text, default="")
    iban: Mapped[str] = mapped_column(String(50), default="")
    bic: Mapped[str] = mapped_column(String(20), default="")
    footer: Mapped[str] = mapped_column(Text, default="")
    logo_url: Mapped[str] = mapped_column(String(2000), default="")
    color: Mapped[str] = mapped_column(String(7), default="#1f6feb")
    pdf_template: Mapped[str] = mapped_column(String(20), default="classic")
    invoice_pattern: Mapped[str] = mapped_column(String(60), default="INV-{YYYY}-{0000}")
    credit_note_pattern: Mapped[str] = mapped_column(String(60), default="CN-{YYYY}-{0000}")
    default_payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    #: Days after the due date on which a reminder goes out, e.g. [7, 14, 30].
    reminder_days: Mapped[list[int]] = mapped_column(JSONB, default=lambda: [7, 14, 30])
    stripe_secret_key: Mapped[str] = mapped_column(Text, default="")  # encrypted (SecretBox)
    stripe_webhook_secret: Mapped[str] = mapped_column(Text, default="")  # encrypted (SecretBox)
    stripe_publishable_key: Mapped[str] = mapped_column(String(200), default="")
    stripe_api_base: Mapped[str] = mapped_column(String(200), default="")
    stripe_payment_methods: Mapped[list[str]] = mapped_column(default=lambda: ["card"])


class Customer(TenantOwned, Timestamped, Base):
    __tablename__ = "erp_customers"
    __table_args__ = tenant_table_args(
        UniqueConstraint("tenant_id", "external_ref"), Index("ix_erp_customers_tenant_id_name", "tenant_id", "name")
    )

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), default="")
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    tax_id: Mapped[str] = mapped_column(String(50), default="")
    currency: Mapped[str] = mapped_column(String(3))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    #: Where the customer came from, e.g. ``crm:company:ACME`` (unique per tenant; null for manual ones).
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)


class Product(TenantOwned, Timestamped, Base):
    __tablename__ = "erp_products"

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"tax_rate_ids": []}

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    unit: Mapped[str] = mapped_column(String(20), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    tax_rate_ids: Mapped[list[str]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class TaxRate(TenantOwned, Timestamped, Base):
    __tablename__ = "erp_tax_rates"

    name: Mapped[str] = mapped_column(String(100))
    #: Percent, e.g. 20 for 20 %.
    rate: Mapped[Decimal] = mapped_column(Numeric(9, 6))
    inclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    #: UN/CEFACT tax category for e-invoices (S standard, Z zero, E exempt, AE reverse charge...).
    category: Mapped[str] = mapped_column(String(4), default="S")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class NumberCounter(TenantScoped, Base):
    """The last number issued in one series and period; its row is locked while a number is taken."""

    __tablename__ = "erp_number_counters"

    series: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: The year for patterns with {YYYY} (numbering restarts each year), else "".
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class RecurringTemplate(TenantOwned, Timestamped, Base):
    __tablename__ = "erp_recurring_templates"
    __table_args__ = tenant_table_args(tenant_foreign_key(["customer_id"], "erp_customers", ondelete="CASCADE"))

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"body": {}}

    customer_id: Mapped[UUID] = mapped_column()
    interval: Mapped[str] = mapped_column(String(10))  # monthly, quarterly, yearly
    #: The first run; run n falls on start_on + n intervals (the day clamped to the month's length).
    start_on: Mapped[dt.date] = mapped_column(Date)
    next_run: Mapped[dt.date] = mapped_column(Date)
    #: The invoice body each run copies: lines, discount, notes (InvoiceIn as JSON).
    body: Mapped[dict[str, Any]] = mapped_column()
    send_email: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(TenantOwned, Timestamped, Base):
    __tablename__ = "erp_invoices"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["customer_id"], "erp_customers", ondelete="RESTRICT"),
        tenant_foreign_key(["credited_invoice_id"], "erp_invoices", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "number"),
        UniqueConstraint("tenant_id", "public_token"),
        UniqueConstraint("tenant_id", "external_ref"),
        Index("ix_erp_invoices_tenant_id_status_due_date", "tenant_id", "status", "due_date"),
        Index("ix_erp_invoices_tenant_id_customer_id", "tenant_id", "customer_id"),
    )

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"tax_breakdown": [], "customer_snapshot": {}}

    kind: Mapped[str] = mapped_column(String(12), default="invoice")  # invoice, credit_note
    status: Mapped[str] = mapped_column(String(16), default="draft")
    customer_id: Mapped[UUID] = mapped_column()
    number: Mapped[str | None] = mapped_column(String(60), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    due_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    payment_terms_days: Mapped[int | None] = mapped_column(Integer, default=None)
    discount_kind: Mapped[str | None] = mapped_column(String(8), default=None)  # percent, fixed
    discount_value: Mapped[Decimal | None] = mapped_column(Money, default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    subtotal: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    discount_total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    tax_total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    included_tax_total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    #: Payments less refunds.
    amount_paid: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    #: Sum of the issued credit notes against this invoice.
    credited_total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    tax_breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    #: The customer's billing details as they were when the invoice was issued.
    customer_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: For a credit note: the invoice it corrects.
    credited_invoice_id: Mapped[UUID | None] = mapped_column(default=None)
    recurring_template_id: Mapped[UUID | None] = mapped_column(default=None)
    #: The secret of the customer's link (``/erp/pay/<token>``).
    public_token: Mapped[str | None] = mapped_column(String(64), default=None)
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    issued_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    paid_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    voided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    overdue_since: Mapped[dt.date | None] = mapped_column(Date, default=None)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)


class InvoiceLine(TenantOwned, Base):
    __tablename__ = "erp_invoice_lines"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["invoice_id"], "erp_invoices", ondelete="CASCADE"),
        Index("ix_erp_invoice_lines_tenant_id_invoice_id", "tenant_id", "invoice_id", "position"),
    )

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"taxes": []}

    invoice_id: Mapped[UUID] = mapped_column()
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[UUID | None] = mapped_column(default=None)
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str] = mapped_column(String(20), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money)
    discount_kind: Mapped[str | None] = mapped_column(String(8), default=None)
    discount_value: Mapped[Decimal | None] = mapped_column(Money, default=None)
    #: The taxes as they were when the line was written: [{id, name, rate, inclusive, category}].
    taxes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    net: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    tax: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class Payment(TenantOwned, Timestamped, Base):
    """Money received for an invoice (``kind="payment"``) or given back (``kind="refund"``); amounts positive."""

    __tablename__ = "erp_payments"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["invoice_id"], "erp_invoices", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "provider_ref"),
        Index("ix_erp_payments_tenant_id_invoice_id", "tenant_id", "invoice_id"),
    )

    invoice_id: Mapped[UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(8), default="payment")
    method: Mapped[str] = mapped_column(String(20))  # bank_transfer, cash, card, stripe, other
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    received_on: Mapped[dt.date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    #: The payment provider's id (Stripe payment intent or refund): one booking per provider object.
    provider_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    refund_of_id: Mapped[UUID | None] = mapped_column(default=None)


class StripeEvent(TenantScoped, Base):
    """Every Stripe event received, keyed by its id: a replayed or duplicated event books once."""

    __tablename__ = "erp_stripe_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[dt.datetime] = mapped_column()
