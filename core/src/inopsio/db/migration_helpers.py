"""Alembic helpers that create a tenant-owned table exactly as ``TenantOwned`` models declare it.

``tenant_table`` adds what every tenant table repeats (``tenant_id`` leading the primary key, its
foreign key to ``tenants``, the models' constraint and index names, row-level security), so a
revision lists only the table's own columns, constraints and indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.operations import ops

from inopsio.db.base import NAMING_CONVENTION, tenant_foreign_key
from inopsio.db.rls import enable_tenant_rls

TENANT_COLUMN = "tenant_id"


def tenant_fk(
    target_table: str, *columns: str, target_columns: Sequence[str] = ("id",), **kwargs: Any
) -> sa.ForeignKeyConstraint:
    """A foreign key to another tenant table through ``tenant_id``, for :func:`tenant_table`.

    ``tenant_fk("crm_leads", "lead_id", ondelete="CASCADE")`` references ``crm_leads(tenant_id, id)``:
    the same constraint as the model's ``tenant_foreign_key(["lead_id"], "crm_leads", ...)``.
    """
    if not columns:
        raise ValueError(f"tenant_fk({target_table!r}): name the referencing column(s)")
    return tenant_foreign_key(columns, target_table, target_columns, **kwargs)


def tenant_table(
    name: str,
    *items: sa.Column[Any] | sa.Constraint | sa.Index,
    primary_key: Sequence[str] = ("id",),
    timestamps: bool = False,
    **kwargs: Any,
) -> sa.Table:
    """Create a tenant-owned table in a migration, with row-level security enabled and forced.

    ``items`` are the table's own columns, constraints (:func:`tenant_fk`, checks, uniques) and
    indexes. Added in front: ``tenant_id`` (uuid, not null, foreign key to ``tenants.id`` ON DELETE
    CASCADE) and, when ``primary_key`` names ``id`` and no such column is given, ``id`` (uuid); the
    primary key is ``(tenant_id, *primary_key)``. ``timestamps=True`` adds ``created_at`` and
    ``updated_at`` as ``Timestamped`` declares them. Unnamed constraints and indexes get the
    names the models' naming convention gives them (``pk_``, ``fk_``, ``uq_``, ``ck_``, ``ix_``).
    Returns the table, e.g. for ``op.bulk_insert``. The application role's grants are not made
    here: ``inopsio migrate`` grants each registered model's table its privileges after upgrading.
    """
    given = {item.name for item in items if isinstance(item, sa.Column)}
    if TENANT_COLUMN in given:
        raise ValueError(f"tenant_table({name!r}): tenant_id is added by the helper, leave it out")
    keyed = [item.name for item in items if isinstance(item, sa.Column) and item.primary_key]
    if keyed:
        raise ValueError(
            f"tenant_table({name!r}): put {', '.join(keyed)} in primary_key=(...) instead of Column(primary_key=True)"
        )
    missing = [column for column in primary_key if column not in given and column != "id"]
    if missing:
        raise ValueError(f"tenant_table({name!r}): primary key column(s) {', '.join(missing)} not given")
    leading: list[sa.Column[Any]] = [sa.Column(TENANT_COLUMN, sa.Uuid(), nullable=False)]
    if "id" in primary_key and "id" not in given:
        leading.append(sa.Column("id", sa.Uuid(), nullable=False))
    trailing: list[sa.Column[Any]] = []
    if timestamps:
        trailing = [
            sa.Column(column, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
            for column in ("created_at", "updated_at")
        ]
    # A table of its own metadata, under the models' naming convention: SQLAlchemy names each
    # constraint and index as it is attached, exactly as it does for a model's table, and the
    # names travel into the migration as final (``conv``) names whatever the migration's context.
    table = sa.Table(
        name,
        sa.MetaData(naming_convention=NAMING_CONVENTION),
        *leading,
        *items,
        *trailing,
        sa.PrimaryKeyConstraint(TENANT_COLUMN, *primary_key),
        sa.ForeignKeyConstraint([TENANT_COLUMN], ["tenants.id"], ondelete="CASCADE"),
        **kwargs,
    )
    op.invoke(ops.CreateTableOp.from_table(table))
    # ``from_table`` carries columns and constraints; indexes (``index=True`` or ``sa.Index``) follow.
    for index in sorted(table.indexes, key=lambda index: str(index.name)):
        op.invoke(ops.CreateIndexOp.from_index(index))
    enable_tenant_rls(op, name)
    return table


def drop_tenant_table(name: str) -> None:
    """The inverse of :func:`tenant_table`, for a migration's ``downgrade``.

    Dropping the table drops its policy, indexes and constraints with it.
    """
    op.drop_table(name)
