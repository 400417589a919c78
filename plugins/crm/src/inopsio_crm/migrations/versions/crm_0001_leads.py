"""CRM: leads, their timeline, custom field definitions and the round-robin rule.

Revision ID: crm_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "crm_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crm",)
depends_on: str | Sequence[str] | None = "kernel_0005"

SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || "
    "coalesce(phone, '') || ' ' || coalesce(company, '') || ' ' || coalesce(title, '') || ' ' || "
    "coalesce(source, ''))"
)
EMPTY_LIST = sa.text("'[]'::jsonb")
EMPTY_OBJECT = sa.text("'{}'::jsonb")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "crm_leads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("company", sa.String(200), server_default="", nullable=False),
        sa.Column("title", sa.String(200), server_default="", nullable=False),
        sa.Column("source", sa.String(50), server_default="", nullable=False),
        sa.Column("status", sa.String(20), server_default="new", nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("estimated_value", sa.Numeric(18, 2), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("tags", postgresql.JSONB(), server_default=EMPTY_LIST, nullable=False),
        sa.Column("custom", postgresql.JSONB(), server_default=EMPTY_OBJECT, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merged_into_id", sa.Uuid(), nullable=True),
        sa.Column("search", postgresql.TSVECTOR(), sa.Computed(SEARCH_DOCUMENT, persisted=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('new', 'contacted', 'qualified', 'unqualified', 'converted')", name=op.f("ck_crm_leads_status")
        ),
        sa.CheckConstraint("(estimated_value IS NULL) = (currency IS NULL)", name=op.f("ck_crm_leads_value_currency")),
        _tenant_fk("crm_leads"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_crm_leads_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_leads")),
    )
    op.create_index("ix_crm_leads_tenant_created", "crm_leads", ["tenant_id", "created_at", "id"])
    op.create_index("ix_crm_leads_tenant_owner", "crm_leads", ["tenant_id", "owner_id"])
    op.create_index("ix_crm_leads_tenant_email", "crm_leads", ["tenant_id", sa.text("lower(email)")])
    op.create_index("ix_crm_leads_tenant_phone", "crm_leads", ["tenant_id", "phone"])
    op.create_index("ix_crm_leads_search", "crm_leads", ["search"], postgresql_using="gin")
    op.create_index("ix_crm_leads_tags", "crm_leads", ["tags"], postgresql_using="gin")
    op.create_index(
        "ix_crm_leads_custom",
        "crm_leads",
        ["custom"],
        postgresql_using="gin",
        postgresql_ops={"custom": "jsonb_path_ops"},
    )
    enable_tenant_rls(op, "crm_leads")

    op.create_table(
        "crm_lead_activities",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("data", postgresql.JSONB(), server_default=EMPTY_OBJECT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('created', 'note', 'status_changed', 'assigned', 'updated', 'merged', 'restored', 'converted')",
            name=op.f("ck_crm_lead_activities_kind"),
        ),
        _tenant_fk("crm_lead_activities"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "lead_id"],
            ["crm_leads.tenant_id", "crm_leads.id"],
            name=op.f("fk_crm_lead_activities_tenant_id_crm_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_crm_lead_activities_actor_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_lead_activities")),
    )
    op.create_index("ix_crm_lead_activities_lead", "crm_lead_activities", ["tenant_id", "lead_id", "created_at"])
    enable_tenant_rls(op, "crm_lead_activities")

    op.create_table(
        "crm_custom_fields",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(50), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("choices", postgresql.JSONB(), server_default=EMPTY_LIST, nullable=False),
        sa.Column("required", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "type IN ('text', 'number', 'date', 'choice', 'boolean')", name=op.f("ck_crm_custom_fields_type")
        ),
        _tenant_fk("crm_custom_fields"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_crm_custom_fields")),
    )
    op.create_index("uq_crm_custom_fields_key", "crm_custom_fields", ["tenant_id", "key"], unique=True)
    enable_tenant_rls(op, "crm_custom_fields")

    op.create_table(
        "crm_assignment_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("member_ids", postgresql.JSONB(), server_default=EMPTY_LIST, nullable=False),
        sa.Column("next_index", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        _tenant_fk("crm_assignment_rules"),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_crm_assignment_rules")),
    )
    enable_tenant_rls(op, "crm_assignment_rules")


def downgrade() -> None:
    for table in ("crm_assignment_rules", "crm_custom_fields", "crm_lead_activities", "crm_leads"):
        disable_tenant_rls(op, table)
        op.drop_table(table)
