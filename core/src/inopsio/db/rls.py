"""Row-level security for tenant-owned tables: the migration helper and the check ``migrate`` runs.

The policy compares ``tenant_id`` with the transaction-local setting ``inopsio.tenant_id``,
wrapped in a sub-select so PostgreSQL evaluates it once per statement, not once per row. An unset
setting matches nothing, so a query that forgot its tenant sees no rows instead of every row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

POLICY_NAME = "tenant_isolation"
TENANT_SETTING = "inopsio.tenant_id"
#: Set alongside the tenant when a user may also read their own rows in other tenants.
USER_SETTING = "inopsio.user_id"
CURRENT_TENANT_SQL = f"(SELECT NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid)"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def enable_tenant_rls_sql(table: str, tenant_column: str = "tenant_id") -> list[str]:
    t, c = _quote(table), _quote(tenant_column)
    return [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY_NAME} ON {t}",
        f"CREATE POLICY {POLICY_NAME} ON {t} USING ({c} = {CURRENT_TENANT_SQL}) "
        f"WITH CHECK ({c} = {CURRENT_TENANT_SQL})",
    ]


def enable_tenant_rls(op: Any, table: str, tenant_column: str = "tenant_id") -> None:
    """Call from a migration right after ``op.create_table`` of a tenant-owned table."""
    for statement in enable_tenant_rls_sql(table, tenant_column):
        op.execute(statement)


def disable_tenant_rls(op: Any, table: str) -> None:
    """The inverse of :func:`enable_tenant_rls`, for a migration's ``downgrade``."""
    t = _quote(table)
    op.execute(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {t}")
    op.execute(f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY")


def tables_missing_rls(connection: Connection, tables: list[str]) -> list[str]:
    """Of ``tables``, those without ENABLE + FORCE row-level security and a tenant policy."""
    if not tables:
        return []
    rows = connection.execute(
        text(
            """
            SELECT c.relname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE c.relname = ANY(:tables)
              AND c.relrowsecurity AND c.relforcerowsecurity
              AND EXISTS (
                SELECT 1 FROM pg_policy p
                WHERE p.polrelid = c.oid
                  AND pg_get_expr(p.polqual, p.polrelid) LIKE '%inopsio.tenant_id%'
                  AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%inopsio.tenant_id%'
              )
            """
        ),
        {"tables": tables},
    ).scalars()
    protected = set(rows)
    return sorted(t for t in tables if t not in protected)
