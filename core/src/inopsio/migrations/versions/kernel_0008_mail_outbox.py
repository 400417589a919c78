"""The mail outbox: messages written in the transaction of the change that causes them, sent after
commit, with their SMTP delivery state (tenant-owned, behind row-level security).

Revision ID: kernel_0008
Revises: kernel_0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "kernel_0008"
down_revision: str | Sequence[str] | None = "kernel_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_mail_outbox_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mail_outbox")),
    )
    op.create_index("ix_mail_outbox_status", "mail_outbox", ["tenant_id", "status", "created_at"])
    enable_tenant_rls(op, "mail_outbox")


def downgrade() -> None:
    disable_tenant_rls(op, "mail_outbox")
    op.drop_table("mail_outbox")
