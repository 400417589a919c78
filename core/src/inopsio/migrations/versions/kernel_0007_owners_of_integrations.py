"""Who answers for an integration: the admin who configured an OIDC provider, the user who set up a
webhook subscription. Sign-ins through a provider never yield more than its configurer holds, and a
webhook only carries the events its owner may read (both checked at every use).

Revision ID: kernel_0007
Revises: kernel_0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kernel_0007"
down_revision: str | Sequence[str] | None = "kernel_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("oidc_providers", sa.Column("configured_by", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_oidc_providers_configured_by_users"),
        "oidc_providers",
        "users",
        ["configured_by"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("webhook_subscriptions", sa.Column("created_by", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_webhook_subscriptions_created_by_users"),
        "webhook_subscriptions",
        "users",
        ["created_by"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_webhook_subscriptions_created_by_users"), "webhook_subscriptions", type_="foreignkey")
    op.drop_column("webhook_subscriptions", "created_by")
    op.drop_constraint(op.f("fk_oidc_providers_configured_by_users"), "oidc_providers", type_="foreignkey")
    op.drop_column("oidc_providers", "configured_by")
