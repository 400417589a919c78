"""The mail outbox: messages written in the transaction of the change that causes them, sent after
commit, with their SMTP delivery state (tenant-owned, behind row-level security).

Revision ID: kernel_0008
Revises: kernel_0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from inopsio.db.migration_helpers import drop_tenant_table, tenant_table

revision: str = "kernel_0008"
down_revision: str | Sequence[str] | None = "kernel_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tenant_table(
        "mail_outbox",
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("sender", sa.String(length=400), nullable=False),
        sa.Column("recipient", sa.String(length=400), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("attachments", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_mail_outbox_status", "tenant_id", "status", "created_at"),
    )


def downgrade() -> None:
    drop_tenant_table("mail_outbox")
