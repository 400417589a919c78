"""Web sessions: the digest of each session cookie's secret, kept with its session.

Revision ID: kernel_0003
Revises: kernel_0002
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kernel_0003"
down_revision: str | Sequence[str] | None = "kernel_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("auth_sessions", sa.Column("secret_hash", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_auth_sessions_secret_hash"), "auth_sessions", ["secret_hash"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_auth_sessions_secret_hash"), "auth_sessions", type_="unique")
    op.drop_column("auth_sessions", "secret_hash")
