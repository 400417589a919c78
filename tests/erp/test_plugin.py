"""The ERP plugin loads through its entry point, declares its permissions and catalogued event types."""

from __future__ import annotations


async def test_event_types_are_catalogued_with_payload_schemas(client, make_tenant, sign_in):
    tenant = await make_tenant()
    headers = await sign_in(tenant, "owner")
    response = await client.get("/api/v1/events/catalog", headers=headers)
    assert response.status_code == 200, response.text
    names = {item["type"] for item in response.json()}
    assert {
        "erp.invoice.issued",
        "erp.invoice.sent",
        "erp.invoice.paid",
        "erp.invoice.overdue",
        "erp.invoice.voided",
        "erp.payment.received",
        "erp.payment.failed",
        "erp.payment.refunded",
    } <= names


async def test_viewer_reads_but_cannot_write(client, make_tenant, sign_in, kernel):
    tenant = await make_tenant()
    viewer = await sign_in(tenant, "viewer")
    assert (await client.get("/api/v1/erp/customers", headers=viewer)).status_code == 200
    response = await client.post("/api/v1/erp/customers", json={"name": "X", "currency": "EUR"}, headers=viewer)
    assert response.status_code == 403
