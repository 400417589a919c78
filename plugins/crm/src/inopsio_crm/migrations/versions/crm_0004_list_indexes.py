"""CRM: the lead list under row-level security: sort indexes, an integer value key, a search-term table.

Under row-level security PostgreSQL only uses an index for a condition whose operator is
leakproof (text, timestamptz, integer comparisons); ``tsvector @@ tsquery``, ``jsonb @>`` and
numeric comparisons are not, so their GIN and expression indexes served nobody and are dropped.
Search goes through ``crm_lead_terms`` (one row per lexeme of a lead's tsvector, byte-ordered,
kept by statement-level triggers), the value sort and range through ``value_key`` (cents, bigint).

Revision ID: crm_0004
Revises: crm_0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inopsio.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "crm_0004"
down_revision: str | Sequence[str] | None = "crm_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")

TERMS_FUNCTION = """
CREATE FUNCTION crm_lead_terms_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement-level, with transition tables: one statement however many leads changed. Terms are
    -- found again from the old search document, so the table needs no index by lead.
    -- (Each branch names only the transition tables its event has: plpgsql plans a statement when it
    -- first runs it, and a DELETE trigger has no crm_new_leads.)
    IF TG_OP = 'DELETE' THEN
        DELETE FROM crm_lead_terms t
        USING crm_old_leads o, unnest(tsvector_to_array(o.search)) AS lexeme
        WHERE t.tenant_id = o.tenant_id AND t.term = left(lexeme, 100) COLLATE "C" AND t.lead_id = o.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM crm_lead_terms t
        USING crm_old_leads o JOIN crm_new_leads n ON n.tenant_id = o.tenant_id AND n.id = o.id,
              unnest(tsvector_to_array(o.search)) AS lexeme
        WHERE o.search IS DISTINCT FROM n.search
          AND t.tenant_id = o.tenant_id AND t.term = left(lexeme, 100) COLLATE "C" AND t.lead_id = o.id;
    END IF;
    -- A tsvector's lexemes are distinct already; only two sharing their first 100 characters collide.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO crm_lead_terms (tenant_id, term, lead_id)
        SELECT n.tenant_id, left(lexeme, 100), n.id
        FROM crm_new_leads n, unnest(tsvector_to_array(n.search)) AS lexeme
        ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO crm_lead_terms (tenant_id, term, lead_id)
        SELECT n.tenant_id, left(lexeme, 100), n.id
        FROM crm_new_leads n JOIN crm_old_leads o ON o.tenant_id = n.tenant_id AND o.id = n.id,
             unnest(tsvector_to_array(n.search)) AS lexeme
        WHERE o.search IS DISTINCT FROM n.search
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.drop_index("ix_crm_leads_search", table_name="crm_leads")
    op.drop_index("ix_crm_leads_tags", table_name="crm_leads")
    op.drop_index("ix_crm_leads_custom", table_name="crm_leads")
    op.add_column(
        "crm_leads",
        sa.Column(
            "value_key",
            sa.BigInteger(),
            sa.Computed("coalesce((estimated_value * 100)::bigint, -1)", persisted=True),
            nullable=True,
        ),
    )
    op.create_index("ix_crm_leads_live_name", "crm_leads", ["tenant_id", "name", "id"], postgresql_where=LIVE)
    op.create_index("ix_crm_leads_live_updated", "crm_leads", ["tenant_id", "updated_at", "id"], postgresql_where=LIVE)
    op.create_index("ix_crm_leads_live_value", "crm_leads", ["tenant_id", "value_key", "id"], postgresql_where=LIVE)
    op.create_table(
        "crm_lead_terms",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("term", sa.String(length=100, collation="C"), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_crm_lead_terms_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "term", "lead_id", name=op.f("pk_crm_lead_terms")),
    )
    op.create_index("ix_crm_lead_terms_lead", "crm_lead_terms", ["tenant_id", "lead_id", "term"])
    enable_tenant_rls(op, "crm_lead_terms")
    op.execute(TERMS_FUNCTION)
    op.execute(
        "CREATE TRIGGER crm_lead_terms_insert AFTER INSERT ON crm_leads REFERENCING NEW TABLE AS crm_new_leads "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_terms_refresh()"
    )
    op.execute(
        "CREATE TRIGGER crm_lead_terms_update AFTER UPDATE ON crm_leads "
        "REFERENCING OLD TABLE AS crm_old_leads NEW TABLE AS crm_new_leads "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_terms_refresh()"
    )
    op.execute(
        "CREATE TRIGGER crm_lead_terms_delete AFTER DELETE ON crm_leads REFERENCING OLD TABLE AS crm_old_leads "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_terms_refresh()"
    )
    # Leads written before this revision (row-level security limits this to what the migrating role sees).
    op.execute(
        "INSERT INTO crm_lead_terms (tenant_id, term, lead_id) "
        "SELECT l.tenant_id, left(lexeme, 100), l.id FROM crm_leads l, unnest(tsvector_to_array(l.search)) "
        "AS lexeme ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER crm_lead_terms_delete ON crm_leads")
    op.execute("DROP TRIGGER crm_lead_terms_update ON crm_leads")
    op.execute("DROP TRIGGER crm_lead_terms_insert ON crm_leads")
    op.execute("DROP FUNCTION crm_lead_terms_refresh()")
    disable_tenant_rls(op, "crm_lead_terms")
    op.drop_table("crm_lead_terms")
    for name in ("ix_crm_leads_live_value", "ix_crm_leads_live_updated", "ix_crm_leads_live_name"):
        op.drop_index(name, table_name="crm_leads")
    op.drop_column("crm_leads", "value_key")
    op.create_index("ix_crm_leads_search", "crm_leads", ["search"], postgresql_using="gin")
    op.create_index("ix_crm_leads_tags", "crm_leads", ["tags"], postgresql_using="gin")
    op.create_index(
        "ix_crm_leads_custom",
        "crm_leads",
        ["custom"],
        postgresql_using="gin",
        postgresql_ops={"custom": "jsonb_path_ops"},
    )
