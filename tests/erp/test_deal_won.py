"""``crm.deal.won`` (from the CRM plugin, by type name only): a customer if needed and a draft invoice,
once per deal, with missing or odd payload fields handled."""

from __future__ import annotations

from inopsio.events.bus import add_to_outbox


async def publish_deal_won(kernel, tenant, data: dict) -> None:
    # The CRM plugin is not installed here, so its event type is not declared: write the event to
    # the outbox as the CRM's publish would, and let the kernel's dispatcher deliver it.
    async with kernel.db.session(tenant.id) as session:
        add_to_outbox(session, tenant.id, "crm.deal.won", data, "user:crm")


DEAL = {
    "deal_id": "d-1001",
    "title": "Website relaunch",
    "value": "12500.00",
    "currency": "EUR",
    "company_name": "Globex Ltd",
    "contact_name": "Hank Scorpio",
    "contact_email": "hank@globex.example",
}


async def test_won_deal_becomes_a_draft_invoice_once(erp, kernel, drain_events):
    await publish_deal_won(kernel, erp.tenant, DEAL)
    await publish_deal_won(kernel, erp.tenant, DEAL)  # delivered again (at least once): still one invoice
    await drain_events()
    [customer] = await erp.call("GET", "/customers")
    assert (customer["name"], customer["email"]) == ("Globex Ltd", "hank@globex.example")
    [invoice] = await erp.call("GET", "/invoices")
    full = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (full["status"], full["currency"], full["total"]) == ("draft", "EUR", "12500.00")
    assert full["lines"][0]["description"] == "Website relaunch"
    second = {**DEAL, "deal_id": "d-1002", "value": 99}
    await publish_deal_won(kernel, erp.tenant, second)
    await drain_events()
    assert len(await erp.call("GET", "/customers")) == 1  # the same company: the same customer
    assert len(await erp.call("GET", "/invoices")) == 2


async def test_missing_or_odd_fields_are_handled(erp, kernel, drain_events):
    await publish_deal_won(
        kernel, erp.tenant, {"deal_id": 7, "value": "lots", "currency": "???", "contact_email": "not-an-email"}
    )
    await publish_deal_won(kernel, erp.tenant, {"title": "no deal id"})
    await drain_events()
    [customer] = await erp.call("GET", "/customers")
    assert customer["email"] == ""
    assert customer["currency"] == erp.tenant.settings.currency
    [invoice] = await erp.call("GET", "/invoices")
    assert invoice["total"] == "0.00"
    for status in ("parked", "retrying"):
        response = await erp.client.get("/api/v1/events/deliveries", params={"status": status}, headers=erp.headers)
        assert response.json() == [], status  # the handler neither failed nor gave up
