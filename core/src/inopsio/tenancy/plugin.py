"""The kernel's tenancy feature, registered through the same hooks as any plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import get

from inopsio import hookimpl
from inopsio.deps import CurrentTenant
from inopsio.tenancy.models import Tenant

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


@get("/api/v1/tenant", tags=["tenant"], summary="The tenant this request is for", opt={"public": True})
async def current_tenant(tenant: CurrentTenant) -> dict[str, Any]:
    """Public facts about the tenant (name, locale, time zone, currency, branding) for clients and the UI."""
    s = tenant.settings
    return {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": s.display_name or tenant.name,
        "locale": s.locale,
        "timezone": s.timezone,
        "currency": s.currency,
        "branding": {"logo_url": s.branding.shown_logo_url, "color": s.branding.color},
    }


@hookimpl
def register_models(register: Any) -> None:
    register(Tenant)


@hookimpl
def register_migrations(register: Any) -> None:
    register(MIGRATIONS, "kernel")


@hookimpl
def register_routes(register: Any) -> None:
    register(current_tenant)
