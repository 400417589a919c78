"""The ``tenants`` table: a kernel table, not tenant-owned (tenants are resolved before a tenant is known)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import APP_PRIVILEGES, Base, Timestamped, new_id


class Tenant(Timestamped, Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
        CheckConstraint("slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'", name="slug_format"),
        # Tenants are never deleted by the application: suspension keeps their data.
        {"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    #: Display name, locale, time zone, currency, branding, disabled modules: see TenantSettings.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    #: Overrides of the platform's default quotas: quota name -> limit (null = unlimited).
    quotas: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    suspended_reason: Mapped[str | None] = mapped_column(String(500))
