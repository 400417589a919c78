"""ERP plugin: settings, customers, catalogue, tax rates, invoices, payments, Stripe events, recurring templates.

Revision ID: erp_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "erp_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("erp",)
depends_on: str | Sequence[str] | None = "kernel_0006"


def upgrade() -> None:
    op.create_table(
        "erp_customers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("address_line1", sa.String(length=200), nullable=False),
        sa.Column("address_line2", sa.String(length=200), nullable=False),
        sa.Column("postal_code", sa.String(length=20), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("tax_id", sa.String(length=50), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_customers_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_customers")),
        sa.UniqueConstraint("tenant_id", "external_ref", name=op.f("uq_erp_customers_tenant_id_external_ref")),
    )
    enable_tenant_rls(op, "erp_customers")
    op.create_index("ix_erp_customers_tenant_id_name", "erp_customers", ["tenant_id", "name"], unique=False)
    op.create_table(
        "erp_number_counters",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=20), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("last_value", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_number_counters_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "series", "period", name=op.f("pk_erp_number_counters")),
    )
    enable_tenant_rls(op, "erp_number_counters")
    op.create_table(
        "erp_products",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tax_rate_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_products_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_products")),
    )
    enable_tenant_rls(op, "erp_products")
    op.create_table(
        "erp_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("company_name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("tax_id", sa.String(length=50), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("bank_details", sa.Text(), nullable=False),
        sa.Column("iban", sa.String(length=50), nullable=False),
        sa.Column("bic", sa.String(length=20), nullable=False),
        sa.Column("footer", sa.Text(), nullable=False),
        sa.Column("logo_url", sa.String(length=2000), nullable=False),
        sa.Column("color", sa.String(length=7), nullable=False),
        sa.Column("pdf_template", sa.String(length=20), nullable=False),
        sa.Column("invoice_pattern", sa.String(length=60), nullable=False),
        sa.Column("credit_note_pattern", sa.String(length=60), nullable=False),
        sa.Column("default_payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("reminder_days", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("stripe_secret_key", sa.Text(), nullable=False),
        sa.Column("stripe_webhook_secret", sa.Text(), nullable=False),
        sa.Column("stripe_publishable_key", sa.String(length=200), nullable=False),
        sa.Column("stripe_api_base", sa.String(length=200), nullable=False),
        sa.Column("stripe_payment_methods", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_settings_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_erp_settings")),
    )
    enable_tenant_rls(op, "erp_settings")
    op.create_table(
        "erp_stripe_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_stripe_events_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name=op.f("pk_erp_stripe_events")),
    )
    enable_tenant_rls(op, "erp_stripe_events")
    op.create_table(
        "erp_tax_rates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("rate", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(length=4), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_tax_rates_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_tax_rates")),
    )
    enable_tenant_rls(op, "erp_tax_rates")
    op.create_table(
        "erp_invoices",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=60), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=True),
        sa.Column("discount_kind", sa.String(length=8), nullable=True),
        sa.Column("discount_value", sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("subtotal", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("discount_total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("tax_total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("included_tax_total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("amount_paid", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("credited_total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("tax_breakdown", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("customer_snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("credited_invoice_id", sa.Uuid(), nullable=True),
        sa.Column("recurring_template_id", sa.Uuid(), nullable=True),
        sa.Column("public_token", sa.String(length=64), nullable=True),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_since", sa.Date(), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "credited_invoice_id"],
            ["erp_invoices.tenant_id", "erp_invoices.id"],
            name=op.f("fk_erp_invoices_tenant_id_credited_invoice_id_erp_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["erp_customers.tenant_id", "erp_customers.id"],
            name=op.f("fk_erp_invoices_tenant_id_customer_id_erp_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_invoices_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_invoices")),
        sa.UniqueConstraint("tenant_id", "external_ref", name=op.f("uq_erp_invoices_tenant_id_external_ref")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_erp_invoices_tenant_id_number")),
        sa.UniqueConstraint("tenant_id", "public_token", name=op.f("uq_erp_invoices_tenant_id_public_token")),
    )
    enable_tenant_rls(op, "erp_invoices")
    op.create_index("ix_erp_invoices_tenant_id_customer_id", "erp_invoices", ["tenant_id", "customer_id"], unique=False)
    op.create_index(
        "ix_erp_invoices_tenant_id_status_due_date", "erp_invoices", ["tenant_id", "status", "due_date"], unique=False
    )
    op.create_table(
        "erp_recurring_templates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("interval", sa.String(length=10), nullable=False),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("next_run", sa.Date(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("send_email", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["erp_customers.tenant_id", "erp_customers.id"],
            name=op.f("fk_erp_recurring_templates_tenant_id_customer_id_erp_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_recurring_templates_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_recurring_templates")),
    )
    enable_tenant_rls(op, "erp_recurring_templates")
    op.create_table(
        "erp_invoice_lines",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("discount_kind", sa.String(length=8), nullable=True),
        sa.Column("discount_value", sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column("taxes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("net", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("tax", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("total", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "invoice_id"],
            ["erp_invoices.tenant_id", "erp_invoices.id"],
            name=op.f("fk_erp_invoice_lines_tenant_id_invoice_id_erp_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_invoice_lines_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_invoice_lines")),
    )
    enable_tenant_rls(op, "erp_invoice_lines")
    op.create_index(
        "ix_erp_invoice_lines_tenant_id_invoice_id",
        "erp_invoice_lines",
        ["tenant_id", "invoice_id", "position"],
        unique=False,
    )
    op.create_table(
        "erp_payments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("refund_of_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "invoice_id"],
            ["erp_invoices.tenant_id", "erp_invoices.id"],
            name=op.f("fk_erp_payments_tenant_id_invoice_id_erp_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_payments_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_erp_payments")),
        sa.UniqueConstraint("tenant_id", "provider_ref", name=op.f("uq_erp_payments_tenant_id_provider_ref")),
    )
    enable_tenant_rls(op, "erp_payments")
    op.create_index("ix_erp_payments_tenant_id_invoice_id", "erp_payments", ["tenant_id", "invoice_id"], unique=False)


def downgrade() -> None:
    disable_tenant_rls(op, "erp_payments")
    op.drop_table("erp_payments")
    disable_tenant_rls(op, "erp_invoice_lines")
    op.drop_table("erp_invoice_lines")
    disable_tenant_rls(op, "erp_recurring_templates")
    op.drop_table("erp_recurring_templates")
    disable_tenant_rls(op, "erp_invoices")
    op.drop_table("erp_invoices")
    disable_tenant_rls(op, "erp_tax_rates")
    op.drop_table("erp_tax_rates")
    disable_tenant_rls(op, "erp_stripe_events")
    op.drop_table("erp_stripe_events")
    disable_tenant_rls(op, "erp_settings")
    op.drop_table("erp_settings")
    disable_tenant_rls(op, "erp_products")
    op.drop_table("erp_products")
    disable_tenant_rls(op, "erp_number_counters")
    op.drop_table("erp_number_counters")
    disable_tenant_rls(op, "erp_customers")
    op.drop_table("erp_customers")
