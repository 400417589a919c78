"""Database layer: the declarative base, tenant-owned mixins, engines and row-level security."""

from inopsio.db.base import (
    APP_PRIVILEGES,
    TENANT_SCOPED,
    Base,
    TenantOwned,
    TenantScoped,
    Timestamped,
    new_id,
    tenant_foreign_key,
    tenant_table_args,
    utcnow,
)

__all__ = [
    "APP_PRIVILEGES",
    "TENANT_SCOPED",
    "Base",
    "TenantOwned",
    "TenantScoped",
    "Timestamped",
    "new_id",
    "tenant_foreign_key",
    "tenant_table_args",
    "utcnow",
]
