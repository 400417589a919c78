"""CRM: companies, contacts, pipelines with stages, deals and their stage history.

Revision ID: crm_0002
Revises: crm_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "crm_0002"
down_revision: str | Sequence[str] | None = "crm_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_companies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("domain", sa.String(length=253), server_default="", nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tags", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_crm_companies_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_companies_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_companies")),
    )
    enable_tenant_rls(op, "crm_companies")
    op.create_index(
        "ix_crm_companies_name", "crm_companies", ["tenant_id", sa.literal_column("lower(name)")], unique=False
    )
    op.create_table(
        "crm_pipelines",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_pipelines_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_pipelines")),
    )
    enable_tenant_rls(op, "crm_pipelines")
    op.create_table(
        "crm_contacts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("title", sa.String(length=200), server_default="", nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tags", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_crm_contacts_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "company_id"],
            ["crm_companies.tenant_id", "crm_companies.id"],
            name=op.f("fk_crm_contacts_tenant_id_company_id_crm_companies"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "lead_id"],
            ["crm_leads.tenant_id", "crm_leads.id"],
            name=op.f("fk_crm_contacts_tenant_id_lead_id_crm_leads"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_contacts_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_contacts")),
    )
    enable_tenant_rls(op, "crm_contacts")
    op.create_index("ix_crm_contacts_company", "crm_contacts", ["tenant_id", "company_id"], unique=False)
    op.create_index(
        "ix_crm_contacts_email", "crm_contacts", ["tenant_id", sa.literal_column("lower(email)")], unique=False
    )
    op.create_index(
        "ix_crm_contacts_name", "crm_contacts", ["tenant_id", sa.literal_column("lower(name)")], unique=False
    )
    op.create_table(
        "crm_stages",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), server_default="open", nullable=False),
        sa.CheckConstraint("kind IN ('open', 'won', 'lost')", name=op.f("ck_crm_stages_kind")),
        sa.CheckConstraint("probability BETWEEN 0 AND 100", name=op.f("ck_crm_stages_probability")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "pipeline_id"],
            ["crm_pipelines.tenant_id", "crm_pipelines.id"],
            name=op.f("fk_crm_stages_tenant_id_pipeline_id_crm_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_stages_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_stages")),
        sa.UniqueConstraint("tenant_id", "pipeline_id", "id", name="uq_crm_stages_pipeline_stage"),
    )
    enable_tenant_rls(op, "crm_stages")
    op.create_table(
        "crm_deals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("stage_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("probability", sa.Integer(), nullable=True),
        sa.Column("expected_close_date", sa.Date(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("stage_entered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(value IS NULL) = (currency IS NULL)", name=op.f("ck_crm_deals_value_currency")),
        sa.CheckConstraint(
            "probability IS NULL OR probability BETWEEN 0 AND 100", name=op.f("ck_crm_deals_probability")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_crm_deals_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "company_id"],
            ["crm_companies.tenant_id", "crm_companies.id"],
            name=op.f("fk_crm_deals_tenant_id_company_id_crm_companies"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["crm_contacts.tenant_id", "crm_contacts.id"],
            name=op.f("fk_crm_deals_tenant_id_contact_id_crm_contacts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "lead_id"],
            ["crm_leads.tenant_id", "crm_leads.id"],
            name=op.f("fk_crm_deals_tenant_id_lead_id_crm_leads"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "pipeline_id", "stage_id"],
            ["crm_stages.tenant_id", "crm_stages.pipeline_id", "crm_stages.id"],
            name="fk_crm_deals_stage_in_pipeline",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_deals_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_deals")),
    )
    enable_tenant_rls(op, "crm_deals")
    op.create_index(
        "ix_crm_deals_board", "crm_deals", ["tenant_id", "pipeline_id", "stage_id", "position"], unique=False
    )
    op.create_table(
        "crm_deal_stage_changes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deal_id", sa.Uuid(), nullable=False),
        sa.Column("from_stage_id", sa.Uuid(), nullable=True),
        sa.Column("to_stage_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_crm_deal_stage_changes_actor_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "deal_id"],
            ["crm_deals.tenant_id", "crm_deals.id"],
            name=op.f("fk_crm_deal_stage_changes_tenant_id_deal_id_crm_deals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_deal_stage_changes_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_deal_stage_changes")),
    )
    enable_tenant_rls(op, "crm_deal_stage_changes")
    op.create_index("ix_crm_deal_stage_changes_deal", "crm_deal_stage_changes", ["tenant_id", "deal_id"], unique=False)
    op.create_index(
        "ix_crm_deal_stage_changes_stage", "crm_deal_stage_changes", ["tenant_id", "to_stage_id"], unique=False
    )


def downgrade() -> None:
    for table in (
        "crm_deal_stage_changes",
        "crm_deals",
        "crm_stages",
        "crm_contacts",
        "crm_pipelines",
        "crm_companies",
    ):
        disable_tenant_rls(op, table)
        op.drop_table(table)
