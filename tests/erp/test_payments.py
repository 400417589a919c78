"""Manual payments and refunds: partial payments, overpayment refused, history, status and balance kept right."""

from __future__ import annotations

from sqlalchemy import text


async def test_partial_then_full_payment_updates_status_and_balance(erp, kernel):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])  # 200.00
    first = await erp.call(
        "POST", f"/invoices/{invoice['id']}/payments", 201, json={"amount": "50.00", "reference": "bank 1"}
    )
    assert first["method"] == "bank_transfer"
    assert first["amount"] == "50.00"
    after = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (after["status"], after["balance"], after["amount_paid"]) == ("partially_paid", "150.00", "50.00")

    too_much = await erp.client.post(
        f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": "150.01"}, headers=erp.headers
    )
    assert too_much.status_code == 422
    assert too_much.json()["type"] == "urn:inopsio:problem:payment-exceeds-balance"
    assert too_much.json()["errors"][0]["pointer"] == "/amount"
    for bad in ("0", "-5", "1.001"):
        response = await erp.client.post(
            f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": bad}, headers=erp.headers
        )
        assert response.status_code == 422, bad

    await erp.call("POST", f"/invoices/{invoice['id']}/payments", 201, json={"amount": "150", "method": "cash"})
    paid = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (paid["status"], paid["balance"]) == ("paid", "0.00")
    assert paid["paid_at"] is not None
    closed = await erp.client.post(
        f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": "1"}, headers=erp.headers
    )
    assert closed.status_code == 409

    history = await erp.call("GET", f"/invoices/{invoice['id']}/payments")
    assert [(p["kind"], p["amount"], p["method"]) for p in history] == [
        ("payment", "50.00", "bank_transfer"),
        ("payment", "150.00", "cash"),
    ]
    async with kernel.db.session(erp.tenant.id) as session:
        types = (
            (await session.execute(text("SELECT type FROM event_log WHERE type LIKE 'erp.%' ORDER BY occurred_at, id")))
            .scalars()
            .all()
        )
    assert types.count("erp.payment.received") == 2
    assert types.count("erp.invoice.paid") == 1


async def test_refund_reopens_the_invoice(erp):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    payment = await erp.call("POST", f"/invoices/{invoice['id']}/payments", 201, json={"amount": "200"})
    refund = await erp.call("POST", f"/payments/{payment['id']}/refunds", 201, json={"amount": "30"})
    assert refund["kind"] == "refund"
    assert refund["refund_of_id"] == payment["id"]
    after = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (after["status"], after["balance"], after["amount_paid"]) == ("partially_paid", "30.00", "170.00")
    over = await erp.client.post(
        f"/api/v1/erp/payments/{payment['id']}/refunds", json={"amount": "170.01"}, headers=erp.headers
    )
    assert over.status_code == 422
    rest = await erp.call("POST", f"/payments/{payment['id']}/refunds", 201, json={})
    assert rest["amount"] == "170.00"
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["status"] == "issued"
    assert len(await erp.call("GET", "/payments")) == 3


async def test_payments_need_their_permissions(erp, sign_in, client):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    member = await sign_in(erp.tenant, "member")
    response = await client.post(f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": "1"}, headers=member)
    assert response.status_code == 403
    manager = await sign_in(erp.tenant, "manager")
    payment = await client.post(f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": "1"}, headers=manager)
    assert payment.status_code == 201
    refund = await client.post(f"/api/v1/erp/payments/{payment.json()['id']}/refunds", json={}, headers=manager)
    assert refund.status_code == 403


async def test_payment_on_another_tenants_invoice_looks_unknown(erp, make_tenant, sign_in, client):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    other = await make_tenant()
    headers = await sign_in(other, "owner")
    response = await client.post(
        f"/api/v1/erp/invoices/{invoice['id']}/payments", json={"amount": "1"}, headers=headers
    )
    assert response.status_code == 404
