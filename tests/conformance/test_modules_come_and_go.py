"""Modules come and go: the platform runs with any subset of the installed modules, on a database
that holds every module's tables and rows (a module uninstalled after use, or not yet installed)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import msgspec
import pytest

from inopsio.app import create_app
from inopsio.plugins import installed_entry_points
from inopsio.settings import Settings

PRODUCT_MODULES = sorted(name for name in installed_entry_points() if name != "sample")


async def _with_app(settings: Settings, check: Any) -> None:
    app = create_app(settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{settings.base_domain}") as client:
            await check(app, client)


@pytest.mark.parametrize("loaded", [[], *[[m] for m in PRODUCT_MODULES]], ids=lambda v: "+".join(v) or "kernel-only")
async def test_the_platform_runs_with_a_subset_of_the_modules_on_a_database_that_has_them_all(
    inopsio_migrated: Settings, kernel: Any, loaded: list[str]
) -> None:
    from inopsio.tenancy.schemas import TenantCreate

    # A tenant created with every module installed: each module seeded its rows in it.
    slug = f"modules-{secrets.token_hex(3)}"
    tenant = await kernel.tenants.create(msgspec.convert({"slug": slug, "name": "Modules"}, TenantCreate))
    email = f"owner-{slug}@example.com"
    password = "modules come and go 2026"
    await kernel.identity.accounts.create_member(tenant, email, password, "owner", verified=True)
    settings = msgspec.structs.replace(inopsio_migrated, plugins=loaded, run_worker_in_process=False)

    async def check(app: Any, client: httpx.AsyncClient) -> None:
        assert sorted(app.state.kernel.plugins.plugin_names()) == loaded
        assert (await client.get("/health/ready")).status_code == 200
        login = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": slug}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Tenant": slug}
        dashboard = await client.get("/", headers={**headers, "Accept": "text/html"})
        assert dashboard.status_code == 200
        for module in PRODUCT_MODULES:
            api = await client.get(f"/api/v1/{module}/", headers=headers)
            menu_link = f'href="/{module}/'
            if module in loaded:
                assert menu_link in dashboard.text, module
            else:
                assert api.status_code == 404, (module, api.text)
                assert menu_link not in dashboard.text, module
        catalog = {
            e["type"].split(".")[0] for e in (await client.get("/api/v1/events/catalog", headers=headers)).json()
        }
        assert catalog == {"kernel", *loaded}

    await asyncio.wait_for(_with_app(settings, check), timeout=120)
