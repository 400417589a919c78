"""Fixtures of the ERP tests: a tenant with a signed-in owner, and helpers to build invoices."""

from __future__ import annotations

from typing import Any

import pytest_asyncio


class Erp:
    """A tenant, its owner's headers and shortcuts through the HTTP API."""

    def __init__(self, client: Any, tenant: Any, headers: dict[str, str]) -> None:
        self.client = client
        self.tenant = tenant
        self.headers = headers

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.client.request(method, f"/api/v1/erp{path}", headers=self.headers, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    async def customer(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "Acme GmbH", "email": "billing@acme.example", "country": "DE", "currency": "EUR", **fields}
        return await self.call("POST", "/customers", 201, json=body)

    async def tax(self, name: str = "VAT 20%", rate: str = "20", inclusive: bool = False) -> dict[str, Any]:
        return await self.call("POST", "/tax-rates", 201, json={"name": name, "rate": rate, "inclusive": inclusive})

    async def draft(self, customer_id: str, lines: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
        lines = lines if lines is not None else [{"description": "Consulting", "quantity": "2", "unit_price": "100"}]
        body = {"customer_id": customer_id, "lines": lines, **fields}
        return await self.call("POST", "/invoices", 201, json=body)

    async def issued(
        self, customer_id: str, lines: list[dict[str, Any]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        draft = await self.draft(customer_id, lines, **fields)
        return await self.call("POST", f"/invoices/{draft['id']}/issue", 200)


@pytest_asyncio.fixture(loop_scope="session")
async def erp(client: Any, make_tenant: Any, sign_in: Any, kernel: Any) -> Erp:
    tenant = await make_tenant()
    # Some tests make a hundred calls in a row: lift the per-minute request quotas for them.
    await kernel.tenants.set_quotas(tenant.id, {"api_calls_per_minute": None, "requests_per_minute_per_user": None})
    return Erp(client, tenant, await sign_in(tenant, "owner"))
