"""Events: the tenant-owned event log, the kernel's pending-event index, handler deliveries.

Revision ID: kernel_0004
Revises: kernel_0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "kernel_0004"
down_revision: str | Sequence[str] | None = "kernel_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=150), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_event_log_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_event_log")),
    )
    op.create_index("ix_event_log_tenant_time", "event_log", ["tenant_id", "occurred_at"])
    op.create_index("ix_event_log_tenant_type_time", "event_log", ["tenant_id", "type", "occurred_at"])
    enable_tenant_rls(op, "event_log")
    op.create_table(
        "event_pending",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_pending")),
    )
    op.create_index("ix_event_pending_available", "event_pending", ["available_at"])
    op.create_table(
        "event_deliveries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("handler", sa.String(length=150), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_event_deliveries_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", "handler", name=op.f("pk_event_deliveries")),
    )
    op.create_index("ix_event_deliveries_status", "event_deliveries", ["tenant_id", "status"])
    enable_tenant_rls(op, "event_deliveries")


def downgrade() -> None:
    disable_tenant_rls(op, "event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_table("event_pending")
    disable_tenant_rls(op, "event_log")
    op.drop_table("event_log")
