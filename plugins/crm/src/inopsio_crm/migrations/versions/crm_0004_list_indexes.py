"""CRM: indexes for the lead list's sort orders over live leads (keyset pages by name, update time, value).

Revision ID: crm_0004
Revises: crm_0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0004"
down_revision: str | Sequence[str] | None = "crm_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_crm_leads_live_name", "crm_leads", ["tenant_id", "name", "id"], postgresql_where=LIVE)
    op.create_index("ix_crm_leads_live_updated", "crm_leads", ["tenant_id", "updated_at", "id"], postgresql_where=LIVE)
    op.create_index(
        "ix_crm_leads_live_value",
        "crm_leads",
        ["tenant_id", sa.literal_column("coalesce(estimated_value, -1)"), "id"],
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    for name in ("ix_crm_leads_live_value", "ix_crm_leads_live_updated", "ix_crm_leads_live_name"):
        op.drop_index(name, table_name="crm_leads")
