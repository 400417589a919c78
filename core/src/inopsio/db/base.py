"""Declarative base for every Inopsio table, and the mixins that make a table tenant-owned.

A tenant-owned table carries ``tenant_id`` first in its primary key and in every foreign key to
another tenant-owned table, so a row can never point into another tenant; its migration calls
:func:`inopsio.db.rls.enable_tenant_rls` and ``inopsio migrate`` refuses a tenant-owned table
without a row-level security policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import uuid_utils
from sqlalchemy import DateTime, ForeignKey, ForeignKeyConstraint, MetaData, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: ``Table.info`` key marking a tenant-owned table (set by :class:`TenantScoped`).
TENANT_SCOPED = "inopsio_tenant_scoped"
#: ``Table.info`` key: the privileges the application role gets on a table (default: all DML).
APP_PRIVILEGES = "inopsio_app_privileges"


def new_id() -> UUID:
    """A time-ordered UUIDv7: index-friendly primary keys that reveal no row count."""
    return UUID(bytes=uuid_utils.uuid7().bytes)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: DateTime(timezone=True),
        UUID: Uuid(),
        dict[str, Any]: JSONB(),
        list[str]: JSONB(),
    }


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now(), sort_order=900)
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, server_default=func.now(), onupdate=utcnow, sort_order=901
    )


class TenantScoped:
    """A table whose rows belong to one tenant: ``tenant_id`` leads the primary key.

    Use it for tables with a natural key (``tenant_id`` + other columns); most tables want
    :class:`TenantOwned`, which adds a UUIDv7 ``id``.
    """

    tenant_id: Mapped[UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True, sort_order=-100
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> Any:
        return {"info": {TENANT_SCOPED: True}}


class TenantOwned(TenantScoped):
    """A tenant-owned table keyed by ``(tenant_id, id)``."""

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-99)


def tenant_foreign_key(
    columns: Sequence[str], target_table: str, target_columns: Sequence[str] = ("id",), **kwargs: Any
) -> ForeignKeyConstraint:
    """A foreign key to another tenant-owned table that always includes ``tenant_id``.

    ``tenant_foreign_key(["lead_id"], "crm_leads", ondelete="CASCADE")`` references
    ``crm_leads(tenant_id, id)``, so the referenced row is in the same tenant by construction.
    """
    return ForeignKeyConstraint(
        ["tenant_id", *columns],
        [f"{target_table}.tenant_id", *(f"{target_table}.{c}" for c in target_columns)],
        **kwargs,
    )


def tenant_table_args(*constraints: Any, **info: Any) -> tuple[Any, ...]:
    """``__table_args__`` for a tenant-owned model that adds its own constraints or indexes."""
    return (*constraints, {"info": {TENANT_SCOPED: True, **info}})
