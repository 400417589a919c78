"""Workflow node types (listed in the catalogue, executed directly with a NodeContext) and the demo data."""

from __future__ import annotations

import secrets
import time

from inopsio.automation import NodeContext, parse_config
from inopsio.tenancy.schemas import TenantCreate


async def test_node_types_are_listed_with_config_schemas(erp):
    response = await erp.client.get("/api/v1/automation/node-types", headers=erp.headers)
    nodes = {n["name"]: n for n in response.json()}
    for name in ("erp.invoice.create", "erp.invoice.send", "erp.payment.record"):
        assert nodes[name]["kind"] == "action"
        assert nodes[name]["config_schema"]
    assert nodes["erp.invoice.paid"]["event"] == "erp.invoice.paid"


async def run_node(kernel, tenant, name: str, config: dict, data: dict) -> dict:
    _, node = kernel.node_types[name]
    async with kernel.db.session(tenant.id) as session:
        ctx = NodeContext(kernel=kernel, tenant_id=tenant.id, session=session)
        return await node.execute(ctx, parse_config(node, config), data)


async def test_create_send_and_pay_through_nodes(erp, kernel, run_jobs, smtp_sink):
    customer = await erp.customer(email="flow@customer.example")
    created = await run_node(
        kernel,
        erp.tenant,
        "erp.invoice.create",
        {"issue": True},
        {"customer_id": customer["id"], "title": "Setup fee", "amount": "300"},
    )
    assert created["invoice_status"] == "issued"
    assert created["invoice_total"] == "300.00"
    sent = await run_node(kernel, erp.tenant, "erp.invoice.send", {}, created)
    assert sent["invoice_sent_at"]
    paid = await run_node(kernel, erp.tenant, "erp.payment.record", {"method": "cash"}, {**created, "amount": "300"})
    assert (paid["invoice_status"], paid["invoice_balance"]) == ("paid", "0.00")
    await run_jobs()
    assert len(smtp_sink.to("flow@customer.example")) == 1


async def test_nodes_report_bad_input_as_value_errors(erp, kernel):
    import pytest

    customer = await erp.customer()
    with pytest.raises(ValueError, match="amount"):
        await run_node(kernel, erp.tenant, "erp.invoice.create", {}, {"customer_id": customer["id"], "title": "x"})
    with pytest.raises(ValueError, match="unit_price"):
        await run_node(
            kernel, erp.tenant, "erp.invoice.create", {}, {"customer_id": customer["id"], "title": "x", "amount": "-1"}
        )
    created = await run_node(
        kernel,
        erp.tenant,
        "erp.invoice.create",
        {"issue": True},
        {"customer_id": customer["id"], "title": "x", "amount": "10"},
    )
    with pytest.raises(ValueError, match="larger than the open balance"):
        await run_node(kernel, erp.tenant, "erp.payment.record", {}, {**created, "amount": "11"})
    with pytest.raises(ValueError, match="method"):
        parse_config(kernel.node_types["erp.payment.record"][1], {"method": "bitcoin"})


async def test_demo_data_has_invoices_in_every_state(kernel, sign_in, client):
    started = time.perf_counter()
    tenant = await kernel.tenants.create(
        TenantCreate(slug=f"demo-{secrets.token_hex(4)}", name="Demo Co"), demo_data=True
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 3
    headers = await sign_in(tenant, "owner")
    response = await client.get("/api/v1/erp/invoices", params={"limit": 200}, headers=headers)
    invoices = response.json()
    assert {i["status"] for i in invoices if i["kind"] == "invoice"} == {
        "draft",
        "issued",
        "partially_paid",
        "paid",
        "overdue",
        "credited",
        "void",
    }
    assert any(i["kind"] == "credit_note" for i in invoices)
    customers = (await client.get("/api/v1/erp/customers", headers=headers)).json()
    assert len(customers) == 4
    numbers = sorted(i["number"] for i in invoices if i["kind"] == "invoice" and i["number"])
    assert [n[-4:] for n in numbers] == [f"{n:04d}" for n in range(1, len(numbers) + 1)]
