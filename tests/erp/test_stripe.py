"""Stripe webhooks with correctly signed payloads (Stripe's scheme: HMAC-SHA256 over "t.payload"):
verified, idempotent by event id, scoped to the tenant, booking payments, failures and refunds."""

from __future__ import annotations

import json
import secrets
import time

import stripe
from sqlalchemy import text

WEBHOOK_SECRET = "whsec_test_" + "a" * 24


def signed(event: dict, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    timestamp = at if at is not None else int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload.decode()}", secret)
    return payload, f"t={timestamp},v1={signature}"


def event(kind: str, obj: dict) -> dict:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
    }


def intent(tenant, invoice: dict, amount: int, **fields) -> dict:
    return {
        "id": "pi_" + secrets.token_hex(12),
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": invoice["currency"].lower(),
        "metadata": {"inopsio_tenant_id": str(tenant.id), "inopsio_invoice_id": invoice["id"]},
        **fields,
    }


async def post_event(erp, body: dict, **kwargs) -> object:
    payload, header = signed(body, **kwargs)
    return await erp.client.post(
        "/api/v1/erp/stripe/webhook",
        content=payload,
        headers={"X-Tenant": erp.tenant.slug, "Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def configured(erp) -> None:
    await erp.call(
        "PATCH", "/settings", json={"stripe_secret_key": "sk_test_x", "stripe_webhook_secret": WEBHOOK_SECRET}
    )


async def test_payment_intent_succeeded_books_once_and_confirms_by_email(erp, run_jobs, smtp_sink):
    await configured(erp)
    customer = await erp.customer(email="card@customer.example")
    invoice = await erp.issued(customer["id"])  # 200.00 EUR
    body = event("payment_intent.succeeded", intent(erp.tenant, invoice, 7500))
    first = await post_event(erp, body)
    assert first.status_code == 200, first.text
    assert first.json()["outcome"].startswith("booked 75.00")
    replay = await post_event(erp, body)
    assert replay.json()["outcome"] == "duplicate"
    after = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (after["status"], after["balance"]) == ("partially_paid", "125.00")
    [payment] = await erp.call("GET", f"/invoices/{invoice['id']}/payments")
    assert payment["method"] == "stripe"
    # The same payment intent arriving as the Checkout session's completion books nothing more.
    completed = event(
        "checkout.session.completed",
        {
            "id": "cs_" + secrets.token_hex(8),
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": body["data"]["object"]["id"],
            "amount_total": 7500,
            "currency": "eur",
            "metadata": body["data"]["object"]["metadata"],
        },
    )
    assert (await post_event(erp, completed)).json()["outcome"] == "already booked"
    await run_jobs()
    [mail] = smtp_sink.to("card@customer.example")
    assert invoice["number"] in mail["Subject"]
    assert "125,00" in mail.get_body(("plain",)).get_content() or "125.00" in mail.get_body(("plain",)).get_content()


async def test_checkout_completion_pays_in_full(erp, drain_events):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    completed = event(
        "checkout.session.completed",
        {
            "id": "cs_" + secrets.token_hex(8),
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": "pi_" + secrets.token_hex(8),
            "amount_total": 20000,
            "currency": "eur",
            "metadata": {"inopsio_tenant_id": str(erp.tenant.id), "inopsio_invoice_id": invoice["id"]},
        },
    )
    response = await post_event(erp, completed)
    assert response.json()["outcome"].startswith("booked 200.00")
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["status"] == "paid"


async def test_forged_stale_or_unsigned_webhooks_are_refused(erp, kernel):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    body = event("payment_intent.succeeded", intent(erp.tenant, invoice, 100))
    forged = await post_event(erp, body, secret="whsec_someone_else")
    stale = await post_event(erp, body, at=int(time.time()) - 3600)
    unsigned = await erp.client.post(
        "/api/v1/erp/stripe/webhook", content=json.dumps(body), headers={"X-Tenant": erp.tenant.slug}
    )
    for response in (forged, stale, unsigned):
        assert response.status_code == 400
        assert response.json()["type"] == "urn:inopsio:problem:invalid-signature"
    payload, header = signed(body)
    tampered = await erp.client.post(
        "/api/v1/erp/stripe/webhook",
        content=payload.replace(b"100", b"999"),
        headers={"X-Tenant": erp.tenant.slug, "Stripe-Signature": header},
    )
    assert tampered.status_code == 400
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["amount_paid"] == "0.00"


async def test_webhook_signed_beyond_the_tolerance_in_either_direction_is_refused_and_books_nothing(erp):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    now = int(time.time())
    for at in (now + 3600, now + 10 * 365 * 86400, now - 3600):
        body = event("payment_intent.succeeded", intent(erp.tenant, invoice, 100))
        response = await post_event(erp, body, at=at)
        assert response.status_code == 400, (at - now, response.text)
        assert response.json()["type"] == "urn:inopsio:problem:invalid-signature"
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["amount_paid"] == "0.00"
    # Within the tolerance both ways (a clock a minute ahead or behind Stripe's) it is booked.
    for at in (now + 60, now - 60):
        body = event("payment_intent.succeeded", intent(erp.tenant, invoice, 100))
        response = await post_event(erp, body, at=at)
        assert response.status_code == 200, response.text
        assert response.json()["outcome"].startswith("booked 1.00")


async def test_webhook_naming_another_tenants_invoice_books_nothing(erp, make_tenant, sign_in, client, kernel):
    await configured(erp)
    other = await make_tenant()
    other_headers = await sign_in(other, "owner")
    theirs = type(erp)(client, other, other_headers)
    their_customer = await theirs.customer()
    their_invoice = await theirs.issued(their_customer["id"])
    # Signed with our secret, on our address, naming their invoice (with either tenant id).
    for tenant in (erp.tenant, other):
        body = event("payment_intent.succeeded", intent(tenant, their_invoice, 100))
        response = await post_event(erp, body)
        assert response.status_code == 200
        assert response.json()["outcome"] == "ignored: no invoice of this tenant"
    assert (await theirs.call("GET", f"/invoices/{their_invoice['id']}"))["amount_paid"] == "0.00"


async def test_failed_payment_publishes_an_event(erp, kernel):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    body = event(
        "payment_intent.payment_failed",
        intent(erp.tenant, invoice, 20000, last_payment_error={"message": "Your card was declined."}),
    )
    response = await post_event(erp, body)
    assert response.json()["outcome"] == "failed: Your card was declined."
    async with kernel.db.session(erp.tenant.id) as session:
        data = (
            await session.execute(text("SELECT data FROM event_log WHERE type = 'erp.payment.failed'"))
        ).scalar_one()
    assert data["reason"] == "Your card was declined."
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["status"] == "issued"


async def test_charge_refunded_books_each_refund_once(erp):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    pi = intent(erp.tenant, invoice, 20000)
    await post_event(erp, event("payment_intent.succeeded", pi))
    charge = {
        "id": "ch_" + secrets.token_hex(8),
        "object": "charge",
        "payment_intent": pi["id"],
        "amount": 20000,
        "amount_refunded": 5000,
        "currency": "eur",
        "metadata": pi["metadata"],
        "refunds": {
            "object": "list",
            "data": [{"id": "re_1" + secrets.token_hex(6), "amount": 5000, "status": "succeeded"}],
        },
    }
    first = await post_event(erp, event("charge.refunded", charge))
    assert first.json()["outcome"] == "refunds booked: 50.00"
    # A second, different event for the same refund (Stripe sends charge.refunded again later).
    again = await post_event(erp, event("charge.refunded", charge))
    assert again.json()["outcome"] == "refunds already booked"
    after = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (after["status"], after["balance"]) == ("partially_paid", "50.00")


async def test_overpayment_by_webhook_is_kept_for_staff_not_booked(erp):
    await configured(erp)
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    await post_event(erp, event("payment_intent.succeeded", intent(erp.tenant, invoice, 20000)))
    second = await post_event(erp, event("payment_intent.succeeded", intent(erp.tenant, invoice, 20000)))
    assert second.json()["outcome"].startswith("needs attention")
    assert (await erp.call("GET", f"/invoices/{invoice['id']}"))["amount_paid"] == "200.00"


async def test_checkout_needs_stripe_configured(erp):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    response = await erp.client.post(f"/api/v1/erp/invoices/{invoice['id']}/checkout", json={}, headers=erp.headers)
    assert response.status_code == 409
    assert response.json()["type"] == "urn:inopsio:problem:stripe-not-configured"
