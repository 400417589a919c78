"""The Stripe calls through the official library against localstripe (a stateful Stripe server from
PyPI): a card payment booked from its real PaymentIntent, a staff refund made at Stripe and booked
once however often Stripe reports it. localstripe has no Checkout API: creating a session there
shows how a Stripe error reaches the client (502 problem)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from test_stripe import WEBHOOK_SECRET, event, post_event


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    executable = shutil.which("localstripe") or str(Path(sys.executable).with_name("localstripe"))
    if not Path(executable).exists():
        pytest.skip("localstripe is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([executable, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                import time

                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def card_payment(base: str, amount: int, metadata: dict) -> dict:
    """What a customer's card payment leaves at Stripe: a confirmed PaymentIntent."""
    http = stripe.HTTPXClient(allow_sync_methods=True)
    client = stripe.StripeClient("sk_test_customer", base_addresses={"api": base}, http_client=http)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    try:
        method = client.v1.payment_methods.create({"type": "card", "card": card})
        intent = client.v1.payment_intents.create(
            {"amount": amount, "currency": "eur", "payment_method": method.id, "confirm": True, "metadata": metadata}
        )
    finally:
        http.close()
    assert intent.status == "succeeded"
    return intent.to_dict()


async def test_card_payment_and_refund_through_localstripe(erp, localstripe):
    await erp.call(
        "PATCH",
        "/settings",
        json={
            "stripe_secret_key": "sk_test_tenant",
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": localstripe,
        },
    )
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    metadata = {"inopsio_tenant_id": str(erp.tenant.id), "inopsio_invoice_id": invoice["id"]}
    intent = await asyncio.to_thread(card_payment, localstripe, 20000, metadata)
    booked = await post_event(erp, event("payment_intent.succeeded", intent))
    assert booked.json()["outcome"].startswith("booked 200.00")
    [payment] = await erp.call("GET", f"/invoices/{invoice['id']}/payments")
    assert payment["provider_ref"] == intent["id"]

    refund = await erp.call("POST", f"/payments/{payment['id']}/refunds", 201, json={"amount": "60.00"})
    assert refund["provider_ref"].startswith("re_")
    after = await erp.call("GET", f"/invoices/{invoice['id']}")
    assert (after["status"], after["balance"]) == ("partially_paid", "60.00")
    # Stripe then reports the refund on the charge: it is not booked again.
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": intent["id"],
        "amount": 20000,
        "amount_refunded": 6000,
        "currency": "eur",
        "metadata": metadata,
        "refunds": {"object": "list", "data": [{"id": refund["provider_ref"], "amount": 6000, "status": "succeeded"}]},
    }
    assert (await post_event(erp, event("charge.refunded", charge))).json()["outcome"] == "refunds already booked"
    assert len(await erp.call("GET", f"/invoices/{invoice['id']}/payments")) == 2


async def test_stripe_errors_become_problems(erp, localstripe):
    await erp.call("PATCH", "/settings", json={"stripe_secret_key": "sk_test_tenant", "stripe_api_base": localstripe})
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    too_much = await erp.client.post(
        f"/api/v1/erp/invoices/{invoice['id']}/checkout", json={"amount": "200.01"}, headers=erp.headers
    )
    assert too_much.status_code == 422
    response = await erp.client.post(
        f"/api/v1/erp/invoices/{invoice['id']}/checkout", json={"amount": "50"}, headers=erp.headers
    )
    assert response.status_code == 502
    assert response.json()["type"] == "urn:inopsio:problem:stripe-error"


async def test_pay_button_posts_the_amount_to_checkout(erp, client, localstripe):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    path = "/erp/pay/" + invoice["public_url"].rsplit("/erp/pay/", 1)[1]
    tenant = {"X-Tenant": erp.tenant.slug}
    unconfigured = await client.post(path + "/checkout", data={"amount": ""}, headers=tenant)
    assert unconfigured.status_code == 409
    await erp.call("PATCH", "/settings", json={"stripe_secret_key": "sk_test_tenant", "stripe_api_base": localstripe})
    bad = await client.post(path + "/checkout", data={"amount": "lots"}, headers=tenant)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/amount"
    too_much = await client.post(path + "/checkout", data={"amount": "200,01"}, headers=tenant)
    assert too_much.status_code == 422
    # A valid amount reaches Stripe's API through the official library (localstripe has no Checkout).
    reached = await client.post(path + "/checkout", data={"amount": "50,00"}, headers=tenant)
    assert reached.status_code == 502
    assert reached.json()["type"] == "urn:inopsio:problem:stripe-error"


def card_token(base: str, number: str) -> str:
    """What Stripe.js does in the customer's browser: the card's details to Stripe, a token back."""
    import httpx

    card = {"card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123"}
    response = httpx.post(f"{base}/v1/tokens", data={**card, "key": "pk_test_tenant"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def test_card_payment_on_the_customer_page(erp, client, localstripe):
    customer = await erp.customer()
    invoice = await erp.issued(customer["id"])
    path = "/erp/pay/" + invoice["public_url"].rsplit("/erp/pay/", 1)[1]
    tenant = {"X-Tenant": erp.tenant.slug}
    # Without a publishable key (or webhook secret) the page offers Checkout only, under the kernel's policy.
    await erp.call("PATCH", "/settings", json={"stripe_secret_key": "sk_test_tenant", "stripe_api_base": localstripe})
    page = await client.get(path, headers=tenant)
    assert 'id="pay"' in page.text
    assert "card-form" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy  # no Stripe.js on a Checkout-only page
    # The Pay form's answer redirects to Checkout (at the configured Stripe address): browsers check
    # a form's redirect against form-action too.
    assert policy.endswith(f"form-action 'self' {localstripe}")
    unconfigured = await client.post(path + "/card", json={"card_token": "tok_x"}, headers=tenant)
    assert unconfigured.status_code == 409

    await erp.call(
        "PATCH", "/settings", json={"stripe_publishable_key": "pk_test_tenant", "stripe_webhook_secret": WEBHOOK_SECRET}
    )
    page = await client.get(path, headers=tenant)
    assert 'id="card-form"' in page.text
    assert f'<script src="{localstripe}/js.stripe.com/v3/">' in page.text
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' {localstripe};" in policy
    assert f"connect-src 'self' {localstripe};" in policy
    assert "https://js.stripe.com" not in policy  # only the configured origin
    assert policy.endswith(f"form-action 'self' {localstripe}")
    # Every other page keeps the kernel's policy.
    assert localstripe not in (await client.get(path + "/status", headers=tenant)).headers["content-security-policy"]

    bad_token = await client.post(path + "/card", json={"card_token": "4242424242424242"}, headers=tenant)
    assert bad_token.status_code in (400, 422)
    too_much = await client.post(path + "/card", json={"card_token": "tok_x", "amount": "200,01"}, headers=tenant)
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["pointer"] == "/amount"
    declined = await client.post(
        path + "/card",
        json={"card_token": await asyncio.to_thread(card_token, localstripe, "4000000000000341")},
        headers=tenant,
    )
    assert declined.status_code == 402
    assert declined.json()["type"] == "urn:inopsio:problem:card-declined"

    token = await asyncio.to_thread(card_token, localstripe, "4242424242424242")
    paid = await client.post(path + "/card", json={"card_token": token, "amount": "50,00"}, headers=tenant)
    assert paid.status_code == 200, paid.text
    answer = paid.json()
    assert answer["status"] == "succeeded"
    # The PaymentIntent at Stripe names the invoice; the payment is booked by its webhook, not here.
    http = stripe.HTTPXClient(allow_sync_methods=True)
    stripe_client = stripe.StripeClient("sk_test_tenant", base_addresses={"api": localstripe}, http_client=http)
    try:
        intent = await asyncio.to_thread(stripe_client.v1.payment_intents.retrieve, answer["payment_intent"])
    finally:
        http.close()
    assert (intent.amount, intent.currency) == (5000, "eur")
    assert intent.metadata["inopsio_invoice_id"] == invoice["id"]
    assert intent.metadata["inopsio_tenant_id"] == str(erp.tenant.id)
    status = (await client.get(path + "/status", headers=tenant)).json()
    assert status == {"status": "issued", "amount_paid": "0.00"}
    booked = await post_event(erp, event("payment_intent.succeeded", intent.to_dict()))
    assert booked.json()["outcome"].startswith("booked 50.00")
    status = (await client.get(path + "/status", headers=tenant)).json()
    assert status == {"status": "partially_paid", "amount_paid": "50.00"}
