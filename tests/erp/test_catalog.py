"""Customers, tax rates, products and settings through the API, with field-level problems for bad input."""

from __future__ import annotations

import pytest


async def test_customer_crud_with_tax_id_normalised(erp):
    created = await erp.customer(tax_id="DE 136 695 976", payment_terms_days=14)
    assert created["tax_id"] == "DE136695976"
    assert created["payment_terms_days"] == 14
    fetched = await erp.call("GET", f"/customers/{created['id']}")
    assert fetched == created
    updated = await erp.call("PATCH", f"/customers/{created['id']}", json={"city": "Berlin"})
    assert updated["city"] == "Berlin"
    listed = await erp.call("GET", "/customers", params={"q": "acme"})
    assert [c["id"] for c in listed] == [created["id"]]
    await erp.call("DELETE", f"/customers/{created['id']}", 204)
    await erp.call("GET", f"/customers/{created['id']}", 404)


async def test_defaults_come_from_tenant_and_settings(erp):
    await erp.call("PATCH", "/settings", json={"default_payment_terms_days": 45})
    created = await erp.call("POST", "/customers", 201, json={"name": "Plain"})
    assert created["currency"] == erp.tenant.settings.currency
    assert created["payment_terms_days"] == 45


@pytest.mark.parametrize(
    ("fields", "pointer", "code"),
    [
        ({"tax_id": "DE136695977"}, "/tax_id", "invalid-tax-id"),
        ({"country": "FR", "tax_id": "FR00000000000"}, "/tax_id", "invalid-tax-id"),
        ({"email": "not an email"}, "/email", "validation-error"),
        ({"country": "XX"}, "/country", "validation-error"),
        ({"currency": "ABC"}, "/currency", "unknown-currency"),
    ],
)
async def test_bad_customer_data_names_the_field(erp, fields, pointer, code):
    response = await erp.client.post("/api/v1/erp/customers", json={"name": "Bad", **fields}, headers=erp.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == f"urn:inopsio:problem:{code}"
    assert problem["errors"][0]["pointer"] == pointer


async def test_another_tenants_customer_looks_unknown(erp, make_tenant, sign_in, client):
    created = await erp.customer()
    other = await make_tenant()
    headers = await sign_in(other, "owner")
    theirs = await client.get(f"/api/v1/erp/customers/{created['id']}", headers=headers)
    unknown = await client.get("/api/v1/erp/customers/00000000-0000-7000-8000-000000000000", headers=headers)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"] == unknown.json()["detail"]


async def test_tax_rates_and_products(erp):
    vat = await erp.tax()
    assert vat["rate"] == "20"
    product = await erp.call(
        "POST",
        "/products",
        201,
        json={"name": "Support hour", "unit": "h", "unit_price": "80.50", "tax_rate_ids": [vat["id"]]},
    )
    assert product["tax_rate_ids"] == [vat["id"]]
    bad = await erp.client.post(
        "/api/v1/erp/products",
        json={"name": "X", "unit_price": "1", "tax_rate_ids": ["00000000-0000-7000-8000-000000000000"]},
        headers=erp.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/tax_rate_ids/0"
    negative = await erp.client.post(
        "/api/v1/erp/products", json={"name": "X", "unit_price": "-1"}, headers=erp.headers
    )
    assert negative.status_code == 422
    assert negative.json()["errors"][0]["pointer"] == "/unit_price"


async def test_stripe_keys_are_stored_encrypted_and_never_returned(erp, kernel):
    out = await erp.call("PATCH", "/settings", json={"stripe_secret_key": "sk_test_123", "company_name": "Me Ltd"})
    assert out["stripe_configured"] is True
    assert "sk_test_123" not in str(out)
    from sqlalchemy import text

    async with kernel.db.session(erp.tenant.id) as session:
        stored = (await session.execute(text("SELECT stripe_secret_key FROM erp_settings"))).scalar_one()
    assert stored
    assert "sk_test_123" not in stored
