"""CRM: a lead remembers the CSV import that created it.

An imported lead's "created" entry in its timeline comes from this column (and the import's record)
instead of one activity row per imported lead: a 100,000-row import wrote 100,000 activity rows,
each with its two index entries and its foreign-key check, about a sixth of the import's time. No
foreign key: the import's record may be purged while its leads stay; the timeline then still says
the lead was imported. Nullable without a default, so adding it rewrites nothing.

Revision ID: crm_0006
Revises: crm_0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0006"
down_revision: str | Sequence[str] | None = "crm_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("crm_leads", sa.Column("import_id", sa.Uuid(), nullable=True))


#: Row-level security shows the migrating role one tenant at a time (each statement names its tenant
#: too, for a role that bypasses it).
RESTORE_CREATED = """
DO $$
DECLARE tenant uuid;
BEGIN
    FOR tenant IN SELECT id FROM tenants LOOP
        PERFORM set_config('inopsio.tenant_id', tenant::text, true);
        INSERT INTO crm_lead_activities (tenant_id, id, lead_id, kind, actor_id, body, data, created_at)
        SELECT l.tenant_id, gen_random_uuid(), l.id, 'created', i.created_by, '',
               jsonb_build_object('how', 'import', 'import_id', l.import_id::text), l.created_at
        FROM crm_leads l
        LEFT JOIN crm_lead_imports i ON i.tenant_id = l.tenant_id AND i.id = l.import_id
        WHERE l.tenant_id = tenant AND l.import_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM crm_lead_activities a
                          WHERE a.tenant_id = l.tenant_id AND a.lead_id = l.id AND a.kind = 'created');
    END LOOP;
    PERFORM set_config('inopsio.tenant_id', '', true);
END
$$
"""


def downgrade() -> None:
    # Imported leads get back the "created" activity they would have had.
    op.execute(RESTORE_CREATED)
    op.drop_column("crm_leads", "import_id")
