"""CRM: the lead list's filters in its sort indexes, and tags in the term table.

Each sort order's index carries the columns the list filters on (status, source, owner, value key,
creation time) as key columns after the id, so a page is found by an index-only scan that tests
every filter without reading the leads; only the page's rows are read. A lead's tags become terms
(``\\x01`` + tag: no typed word starts with that character), so a tag is found like a word, in the
term index, instead of in each lead's JSONB. The creation-time index covers live leads only, like
the others; the bin gets a small index of its own.

Revision ID: crm_0005
Revises: crm_0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0005"
down_revision: str | Sequence[str] | None = "crm_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
FILTERS = ("status", "source", "owner_id", "value_key", "created_at")
SORT_INDEXES = {
    "ix_crm_leads_live_created": "created_at",
    "ix_crm_leads_live_updated": "updated_at",
    "ix_crm_leads_live_name": "name",
    "ix_crm_leads_live_value": "value_key",
}

#: A lead's terms: the lexemes of its search document and its tags, each cut to 100 characters.
#: (Each branch names only the transition tables its event has: plpgsql plans a statement when it
#: first runs it, and a DELETE trigger has no crm_new_leads. A tags value that is not an array has
#: no tag terms rather than failing the write.)
TERMS_FUNCTION = """
CREATE OR REPLACE FUNCTION crm_lead_terms_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM crm_lead_terms t
        USING (
            SELECT o.tenant_id, o.id, left(lexeme, 100) AS term
            FROM crm_old_leads o, unnest(tsvector_to_array(o.search)) AS lexeme
            UNION ALL
            SELECT o.tenant_id, o.id, left(chr(1) || tag, 100)
            FROM crm_old_leads o,
                 jsonb_array_elements_text(CASE WHEN jsonb_typeof(o.tags) = 'array' THEN o.tags END) AS tag
        ) AS gone
        WHERE t.tenant_id = gone.tenant_id AND t.term = gone.term COLLATE "C" AND t.lead_id = gone.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM crm_lead_terms t
        USING (
            SELECT o.tenant_id, o.id, left(lexeme, 100) AS term
            FROM crm_old_leads o JOIN crm_new_leads n ON n.tenant_id = o.tenant_id AND n.id = o.id,
                 unnest(tsvector_to_array(o.search)) AS lexeme
            WHERE o.search IS DISTINCT FROM n.search OR o.tags IS DISTINCT FROM n.tags
            UNION ALL
            SELECT o.tenant_id, o.id, left(chr(1) || tag, 100)
            FROM crm_old_leads o JOIN crm_new_leads n ON n.tenant_id = o.tenant_id AND n.id = o.id,
                 jsonb_array_elements_text(CASE WHEN jsonb_typeof(o.tags) = 'array' THEN o.tags END) AS tag
            WHERE o.search IS DISTINCT FROM n.search OR o.tags IS DISTINCT FROM n.tags
        ) AS gone
        WHERE t.tenant_id = gone.tenant_id AND t.term = gone.term COLLATE "C" AND t.lead_id = gone.id;
        INSERT INTO crm_lead_terms (tenant_id, term, lead_id)
        SELECT n.tenant_id, left(lexeme, 100), n.id
        FROM crm_new_leads n JOIN crm_old_leads o ON o.tenant_id = n.tenant_id AND o.id = n.id,
             unnest(tsvector_to_array(n.search)) AS lexeme
        WHERE o.search IS DISTINCT FROM n.search OR o.tags IS DISTINCT FROM n.tags
        UNION ALL
        SELECT n.tenant_id, left(chr(1) || tag, 100), n.id
        FROM crm_new_leads n JOIN crm_old_leads o ON o.tenant_id = n.tenant_id AND o.id = n.id,
             jsonb_array_elements_text(CASE WHEN jsonb_typeof(n.tags) = 'array' THEN n.tags END) AS tag
        WHERE o.search IS DISTINCT FROM n.search OR o.tags IS DISTINCT FROM n.tags
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END IF;
    -- A tsvector's lexemes are distinct already; only two sharing their first 100 characters
    -- collide (and tags differing only in case, which a lead never keeps both of).
    INSERT INTO crm_lead_terms (tenant_id, term, lead_id)
    SELECT n.tenant_id, left(lexeme, 100), n.id
    FROM crm_new_leads n, unnest(tsvector_to_array(n.search)) AS lexeme
    UNION ALL
    SELECT n.tenant_id, left(chr(1) || tag, 100), n.id
    FROM crm_new_leads n,
         jsonb_array_elements_text(CASE WHEN jsonb_typeof(n.tags) = 'array' THEN n.tags END) AS tag
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$
"""

#: The previous version (crm_0004), for downgrade.
OLD_TERMS_FUNCTION = """
CREATE OR REPLACE FUNCTION crm_lead_terms_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

# Row-level security shows the migrating role one tenant at a time (unless it bypasses it; each
# statement names its tenant for that case).
FOR_EACH_TENANT = """
DO $$
DECLARE tenant uuid;
BEGIN
    FOR tenant IN SELECT id FROM tenants LOOP
        PERFORM set_config('inopsio.tenant_id', tenant::text, true);
        {statement};
    END LOOP;
    PERFORM set_config('inopsio.tenant_id', '', true);
END
$$
"""


def _sort_index(name: str, key: str) -> None:
    columns = ["tenant_id", key, "id", *(column for column in FILTERS if column != key)]
    op.create_index(name, "crm_leads", columns, postgresql_where=LIVE)


def upgrade() -> None:
    op.execute(TERMS_FUNCTION)
    op.execute(
        FOR_EACH_TENANT.format(
            statement="INSERT INTO crm_lead_terms (tenant_id, term, lead_id) "
            "SELECT l.tenant_id, left(chr(1) || tag, 100), l.id FROM crm_leads l, "
            "jsonb_array_elements_text(CASE WHEN jsonb_typeof(l.tags) = 'array' THEN l.tags END) AS tag "
            "WHERE l.tenant_id = tenant ON CONFLICT DO NOTHING"
        )
    )
    op.drop_index("ix_crm_leads_tenant_created", table_name="crm_leads")
    for name, key in SORT_INDEXES.items():
        if name != "ix_crm_leads_live_created":
            op.drop_index(name, table_name="crm_leads")
        _sort_index(name, key)
    op.create_index(
        "ix_crm_leads_bin", "crm_leads", ["tenant_id", "deleted_at"], postgresql_where=sa.text("deleted_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_crm_leads_bin", table_name="crm_leads")
    for name, key in SORT_INDEXES.items():
        op.drop_index(name, table_name="crm_leads")
        if name != "ix_crm_leads_live_created":
            op.create_index(name, "crm_leads", ["tenant_id", key, "id"], postgresql_where=LIVE)
    op.create_index("ix_crm_leads_tenant_created", "crm_leads", ["tenant_id", "created_at", "id"])
    op.execute(
        FOR_EACH_TENANT.format(
            statement="DELETE FROM crm_lead_terms WHERE tenant_id = tenant "
            'AND term >= chr(1) COLLATE "C" AND term < chr(2) COLLATE "C"'
        )
    )
    op.execute(OLD_TERMS_FUNCTION)
