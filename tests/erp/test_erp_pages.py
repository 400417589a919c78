"""The ERP's pages in the web shell (over HTTP): menu entries, dashboard card, invoice list, editor,
detail with actions, customers; and the editor's live totals from the preview API."""

from __future__ import annotations

HTML = {"Accept": "text/html,application/xhtml+xml"}


async def test_menu_card_and_pages(erp, client):
    headers = {**erp.headers, **HTML}
    home = (await client.get("/", headers=headers)).text
    assert 'href="/erp/invoices"' in home
    assert 'href="/erp/customers"' in home
    assert "/erp/cards/receivables" in home
    customer = await erp.customer(name="Page Customer")
    draft = await erp.draft(customer["id"])
    issued = await erp.issued(customer["id"])
    await erp.call("POST", f"/invoices/{issued['id']}/payments", 201, json={"amount": "50"})

    listing = await client.get("/erp/invoices", headers=headers)
    assert listing.status_code == 200
    assert issued["number"] in listing.text
    assert f"/erp/invoices/{draft['id']}" in listing.text
    editor = await client.get(f"/erp/invoices/{draft['id']}", headers=headers)
    assert 'id="invoice-editor"' in editor.text
    assert "erp/editor" in editor.text  # the editor's script, under its content-hashed name
    assert f'data-api-call="/api/v1/erp/invoices/{draft["id"]}/issue"' in editor.text
    detail = await client.get(f"/erp/invoices/{issued['id']}", headers=headers)
    assert "Partly paid" in detail.text
    assert f'data-api="/api/v1/erp/invoices/{issued["id"]}/payments"' in detail.text
    assert "/erp/pay/" in detail.text
    new = await client.get("/erp/invoices/new", headers=headers)
    assert "Page Customer" in new.text
    customers = await client.get("/erp/customers", headers=headers)
    assert "Page Customer" in customers.text
    card = await client.get("/erp/cards/receivables", headers=headers)
    assert card.status_code == 200
    assert "open in 1 invoice" in card.text
    assert "1 draft" in card.text


async def test_viewer_sees_pages_without_write_controls(erp, client, sign_in):
    customer = await erp.customer()
    issued = await erp.issued(customer["id"])
    viewer = {**(await sign_in(erp.tenant, "viewer")), **HTML}
    detail = await client.get(f"/erp/invoices/{issued['id']}", headers=viewer)
    assert detail.status_code == 200
    assert "Record payment" not in detail.text
    assert (await client.get("/erp/invoices/new", headers=viewer)).status_code == 403
    assert "New customer" not in (await client.get("/erp/customers", headers=viewer)).text


async def test_preview_computes_live_totals_without_storing(erp):
    vat = await erp.tax()
    customer = await erp.customer()
    body = {
        "customer_id": customer["id"],
        "lines": [{"description": "a", "quantity": "3", "unit_price": "0.125", "tax_rate_ids": [vat["id"]]}],
        "discount_kind": "percent",
        "discount_value": "10",
    }
    preview = await erp.call("POST", "/invoices/preview", 200, json=body)
    assert (preview["subtotal"], preview["discount_total"], preview["tax_total"], preview["total"]) == (
        "0.38",
        "0.04",
        "0.07",
        "0.41",
    )
    assert preview["lines"][0]["amount"] == "0.38"
    assert await erp.call("GET", "/invoices") == []
    bad = await erp.client.post(
        "/api/v1/erp/invoices/preview",
        json={**body, "lines": [{"description": "a", "quantity": "-1", "unit_price": "1"}]},
        headers=erp.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/lines/0/quantity"
