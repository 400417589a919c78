"""Manual payments and refunds: partial payments, overpayment refused, history, status and balance kept right."""

from __future__ import annotations

import datetime as dt

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


async def test_payment_dated_implausibly_far_ahead_or_before_the_invoice_is_refused_naming_the_field(erp):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    issued_on = dt.date.fromisoformat(invoice["issue_date"])
    # The tenant's today may be a day off the test machine's: stay clear of the edges by more than that.
    today = dt.date.today()
    for bad in (
        "9999-12-31",
        str(today + dt.timedelta(days=30)),
        str(issued_on - dt.timedelta(days=400)),
        "0202-01-01",
    ):
        response = await erp.client.post(
            f"/api/v1/erp/invoices/{invoice['id']}/payments",
            json={"amount": "10", "received_on": bad},
            headers=erp.headers,
        )
        assert response.status_code == 422, (bad, response.text)
        problem = response.json()
        assert problem["type"] == "urn:inopsio:problem:payment-date-out-of-range"
        assert problem["errors"][0]["pointer"] == "/received_on"
        assert bad in problem["detail"]
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["amount_paid"] == "0.00"
    # A value date over a weekend, and a prepayment received weeks before the invoice, are booked.
    for good in (today + dt.timedelta(days=3), issued_on - dt.timedelta(days=60)):
        booked = await erp.call(
            "POST", f"/invoices/{invoice['id']}/payments", 201, json={"amount": "10", "received_on": str(good)}
        )
        assert booked["received_on"] == str(good)
