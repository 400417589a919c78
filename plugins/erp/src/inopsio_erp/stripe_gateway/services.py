"""Stripe through the official library: Checkout sessions for an invoice's open balance (or part of
it), refunds, and booking verified webhook events exactly once.

Each tenant has its own Stripe account: its secret key and webhook signing secret are stored
encrypted in the ERP settings. Amounts go to Stripe as integers in the currency's ISO 4217 minor
units (cents; yen as they are).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import stripe
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db import utcnow
from inopsio.errors import Problem
from inopsio.tenancy.addresses import tenant_url
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp.company import get_settings, secret_box
from inopsio_erp.invoices import services as invoices
from inopsio_erp.models import ErpSettings, Invoice, Payment, StripeEvent
from inopsio_erp.payments import services as payments
from inopsio_erp.payments.services import payment_event
from inopsio_erp.totals import minor_unit

log = logging.getLogger("inopsio_erp.stripe")
#: Seconds a signed webhook stays acceptable (Stripe's own default): older ones are refused as replays.
SIGNATURE_TOLERANCE = 300


def to_minor(amount: Decimal, currency: str) -> int:
    return int((amount / minor_unit(currency)).to_integral_value())


def from_minor(value: int, currency: str) -> Decimal:
    return Decimal(value) * minor_unit(currency)


@asynccontextmanager
async def client_for(kernel: Any, row: ErpSettings) -> AsyncIterator[stripe.StripeClient]:
    """The tenant's Stripe client (async HTTP), closed when the block ends."""
    if not row.stripe_secret_key:
        raise Problem(409, "stripe-not-configured", "Card payments are not set up for this organisation.")
    key = secret_box(kernel.settings).decrypt(row.stripe_secret_key)
    http = stripe.HTTPXClient()
    options: dict[str, Any] = {"http_client": http, "max_network_retries": 2}
    if row.stripe_api_base:
        options["base_addresses"] = {"api": row.stripe_api_base}
    try:
        yield stripe.StripeClient(key, **options)
    finally:
        await http.close_async()


def payable(invoice: Invoice, amount: Decimal | None) -> Decimal:
    """``amount`` (the open balance when None), checked: an open invoice, whole minor units, at most
    the open balance."""
    if invoice.kind != "invoice" or invoice.status not in invoices.OPEN_STATES:
        raise Problem(409, "invoice-not-open", f"This invoice is {invoice.status}: there is nothing to pay.")
    open_balance = invoices.balance(invoice)
    amount = open_balance if amount is None else payments.check_money(amount, invoice.currency)
    if amount > open_balance:
        raise Problem(
            422,
            "payment-exceeds-balance",
            "The amount is larger than the open balance.",
            errors=[{"pointer": "/amount", "detail": f"at most {open_balance.quantize(minor_unit(invoice.currency))}"}],
        )
    return amount


def card_payments_enabled(row: ErpSettings) -> bool:
    """Card payments on the customer's page need the publishable key (Stripe.js), the secret key (the
    PaymentIntent) and the webhook secret (the payment is booked from Stripe's signed event)."""
    methods = list(row.stripe_payment_methods) or ["card"]
    return bool(row.stripe_secret_key and row.stripe_webhook_secret and row.stripe_publishable_key) and (
        "card" in methods
    )


def stripe_js_url(row: ErpSettings) -> str:
    """Stripe.js v3: Stripe's own; with another API address (a test server, refused in production), the
    copy that server serves at the same path (localstripe does)."""
    if row.stripe_api_base:
        return row.stripe_api_base.rstrip("/") + "/js.stripe.com/v3/"
    return "https://js.stripe.com/v3/"


def stripe_api_origin(row: ErpSettings) -> str:
    """Where Stripe.js sends the card details from the customer's browser."""
    if row.stripe_api_base:
        parts = urlsplit(row.stripe_api_base)
        return f"{parts.scheme}://{parts.netloc}"
    return "https://api.stripe.com"


async def pay_by_card(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, invoice: Invoice, amount: Decimal | None, card_token: str
) -> dict[str, str]:
    """A PaymentIntent for ``amount`` of ``invoice``, paid with the card Stripe.js tokenised in the
    customer's browser (the card's details never reach this server), confirmed at once.

    Stripe answers ``succeeded`` (the payment is then booked from its signed ``payment_intent.succeeded``
    webhook, like every Stripe payment), ``requires_action`` (3-D Secure: the page completes it with
    Stripe.js ``confirmCardPayment`` and the ``client_secret``) or a card error (402 problem).
    """
    amount = payable(invoice, amount)
    row = await get_settings(session)
    if not card_payments_enabled(row):
        raise Problem(409, "stripe-not-configured", "Card payments are not set up for this organisation.")
    metadata = {
        "inopsio_tenant_id": str(tenant.id),
        "inopsio_invoice_id": str(invoice.id),
        "inopsio_invoice_number": invoice.number or "",
    }
    customer: dict[str, Any] = {"name": str(invoice.customer_snapshot.get("name") or ""), "metadata": metadata}
    if invoice.customer_snapshot.get("email"):
        customer["email"] = str(invoice.customer_snapshot["email"])
    try:
        async with client_for(kernel, row) as client:
            # The tokenised card is kept on a Stripe customer, whose card a PaymentIntent can charge.
            payer = await client.v1.customers.create_async(customer)  # type: ignore[arg-type]
            card = await client.v1.customers.payment_sources.create_async(payer.id, {"source": card_token})
            intent = await client.v1.payment_intents.create_async(
                {
                    "amount": to_minor(amount, invoice.currency),
                    "currency": invoice.currency.lower(),
                    "customer": payer.id,
                    "payment_method": str(card.id),
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "metadata": metadata,
                },
                {"idempotency_key": f"inopsio-card-{invoice.id}-{card_token}"},
            )
    except stripe.CardError as exc:
        raise Problem(402, "card-declined", exc.user_message or "The card was declined.") from None
    except stripe.StripeError as exc:
        log.warning("Stripe refused a card payment for invoice %s: %s", invoice.id, exc)
        raise Problem(502, "stripe-error", f"Stripe refused the payment: {exc.user_message or exc}") from None
    return {"payment_intent": str(intent.id), "status": str(intent.status), "client_secret": str(intent.client_secret)}


async def create_checkout(
    kernel: Any,
    session: AsyncSession,
    tenant: TenantInfo,
    invoice: Invoice,
    amount: Decimal | None,
    *,
    return_url: str,
) -> tuple[str, str]:
    """A Checkout session paying ``amount`` (the open balance when None) of ``invoice``: (id, url)."""
    amount = payable(invoice, amount)
    row = await get_settings(session)
    metadata = {"inopsio_tenant_id": str(tenant.id), "inopsio_invoice_id": str(invoice.id)}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": invoice.currency.lower(),
                    "unit_amount": to_minor(amount, invoice.currency),
                    "product_data": {"name": f"Invoice {invoice.number}"},
                },
            }
        ],
        "payment_method_types": list(row.stripe_payment_methods) or ["card"],
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": f"Invoice {invoice.number}"},
        "client_reference_id": str(invoice.id),
        "success_url": f"{return_url}?paid=1",
        "cancel_url": return_url,
    }
    if invoice.customer_snapshot.get("email"):
        params["customer_email"] = invoice.customer_snapshot["email"]
    try:
        async with client_for(kernel, row) as client:
            checkout = await client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning("Stripe refused a checkout session for invoice %s: %s", invoice.id, exc)
        raise Problem(502, "stripe-error", f"Stripe refused the payment session: {exc.user_message or exc}") from None
    return checkout.id, str(checkout.url)


async def create_refund(kernel: Any, session: AsyncSession, payment: Payment, amount: Decimal) -> str:
    """Refund ``amount`` of a Stripe payment at Stripe; returns Stripe's refund id."""
    row = await get_settings(session)
    if not payment.provider_ref:
        raise Problem(409, "not-a-stripe-payment", "This payment has no Stripe reference.")
    minor = to_minor(amount, payment.currency)
    # The same refund asked twice within a minute (a double click, a retried request) is one refund.
    key = f"inopsio-refund-{payment.id}-{minor}-{utcnow():%Y%m%d%H%M}"
    try:
        async with client_for(kernel, row) as client:
            refund = await client.v1.refunds.create_async(
                {"payment_intent": payment.provider_ref, "amount": minor}, {"idempotency_key": key}
            )
    except stripe.StripeError as exc:
        raise Problem(502, "stripe-error", f"Stripe refused the refund: {exc.user_message or exc}") from None
    return str(refund.id)


def verify(payload: bytes, signature: str | None, row: ErpSettings, kernel: Any) -> dict[str, Any]:
    """The event, if Stripe's signature over the raw body is valid and fresh; 400 otherwise."""
    if not row.stripe_webhook_secret:
        raise Problem(400, "stripe-not-configured", "No webhook signing secret is configured for this organisation.")
    secret = secret_box(kernel.settings).decrypt(row.stripe_webhook_secret)
    try:
        event = stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=SIGNATURE_TOLERANCE)
    except stripe.SignatureVerificationError:
        raise Problem(400, "invalid-signature", "The Stripe signature is missing, wrong or too old.") from None
    except ValueError:
        raise Problem(400, "malformed-json", "The request body is not a Stripe event.") from None
    # The library refuses only timestamps older than the tolerance; one from the future would let a
    # captured (or pre-signed) request be replayed until that time, so it is refused the same way.
    if signed_at(signature or "") > time.time() + SIGNATURE_TOLERANCE:
        raise Problem(
            400,
            "invalid-signature",
            f"The Stripe signature is dated more than {SIGNATURE_TOLERANCE} seconds in the future.",
        )
    return event.to_dict()


def signed_at(signature: str) -> int:
    """The ``t=`` of a ``Stripe-Signature`` header the library has verified: the first one, which is
    the one the library reads and the signature covers."""
    for item in signature.split(","):
        # Split as the library does ("t=1=x" is read as 1), so both read the same timestamp.
        parts = item.split("=", 2)
        if parts[0] == "t":
            return int(parts[1])
    raise ValueError("a verified Stripe signature always carries t=")


async def receive(kernel: Any, session: AsyncSession, tenant: TenantInfo, event: dict[str, Any]) -> str:
    """Book a verified event once: its id goes into ``erp_stripe_events`` first (primary key), so a
    replayed or concurrently duplicated delivery finds it there and books nothing."""
    stored = await session.execute(
        insert(StripeEvent)
        .values(
            tenant_id=tenant.id, event_id=str(event["id"]), type=str(event["type"]), outcome="", received_at=utcnow()
        )
        .on_conflict_do_nothing()
        .returning(StripeEvent.event_id)
    )
    if stored.scalar_one_or_none() is None:
        return "duplicate"
    outcome = await _handle(kernel, session, tenant, event)
    await session.execute(
        update(StripeEvent).where(StripeEvent.event_id == str(event["id"])).values(outcome=outcome[:200])
    )
    log.info("stripe event %s (%s) for %s: %s", event["id"], event["type"], tenant.slug, outcome)
    return outcome


async def _invoice_for(session: AsyncSession, tenant: TenantInfo, metadata: dict[str, Any] | None) -> Invoice | None:
    """The invoice an event names, only if it names it in this tenant (anything else is unknown)."""
    metadata = metadata or {}
    if metadata.get("inopsio_tenant_id") != str(tenant.id):
        return None
    try:
        invoice_id = UUID(str(metadata.get("inopsio_invoice_id")))
    except ValueError:
        return None
    query = select(Invoice).where(Invoice.id == invoice_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def _book(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, obj: dict[str, Any], ref: str, amount_minor: int
) -> str:
    invoice = await _invoice_for(session, tenant, obj.get("metadata"))
    if invoice is None:
        return "ignored: no invoice of this tenant"
    if str(obj.get("currency", "")).upper() != invoice.currency:
        return f"refused: paid in {obj.get('currency')} for a {invoice.currency} invoice"
    existing = (await session.execute(select(Payment.id).where(Payment.provider_ref == ref))).first()
    if existing is not None:
        return "already booked"
    amount = from_minor(int(amount_minor), invoice.currency)
    try:
        await payments.record_payment(
            kernel,
            session,
            tenant,
            invoice.id,
            amount=amount,
            method="stripe",
            reference=ref,
            provider_ref=ref,
            actor="stripe",
            confirm_by_email=True,
        )
    except Problem as exc:
        # Money arrived that cannot be booked (invoice voided meanwhile, or paid twice): staff must
        # look at it (and refund); the event is kept with this outcome.
        log.warning("stripe payment %s on invoice %s not booked: %s", ref, invoice.id, exc.detail)
        return f"needs attention: {exc.detail}"
    return f"booked {amount} on {invoice.number}"


async def _handle(kernel: Any, session: AsyncSession, tenant: TenantInfo, event: dict[str, Any]) -> str:
    kind = event["type"]
    obj: dict[str, Any] = event["data"]["object"]
    if kind == "checkout.session.completed":
        if obj.get("payment_status") != "paid":
            return "ignored: checkout not paid yet"
        return await _book(
            kernel, session, tenant, obj, str(obj.get("payment_intent") or obj["id"]), obj["amount_total"]
        )
    if kind == "payment_intent.succeeded":
        return await _book(kernel, session, tenant, obj, str(obj["id"]), obj.get("amount_received") or obj["amount"])
    if kind == "payment_intent.payment_failed":
        invoice = await _invoice_for(session, tenant, obj.get("metadata"))
        if invoice is None:
            return "ignored: no invoice of this tenant"
        reason = (obj.get("last_payment_error") or {}).get("message") or "payment failed"
        amount = from_minor(int(obj.get("amount") or 0), invoice.currency)
        data = payment_event(invoice, None, amount, "stripe", reason=str(reason))
        await kernel.events.publish(session, "erp.payment.failed", data, actor="stripe")
        return f"failed: {reason}"
    if kind == "charge.refunded":
        return await _refunded(kernel, session, tenant, obj)
    return f"ignored: {kind}"


async def _refunded(kernel: Any, session: AsyncSession, tenant: TenantInfo, charge: dict[str, Any]) -> str:
    ref = charge.get("payment_intent") or charge.get("id")
    query = select(Payment).where(Payment.provider_ref == str(ref), Payment.kind == "payment")
    payment = (await session.execute(query)).scalar_one_or_none()
    if payment is None or await _invoice_for(session, tenant, charge.get("metadata")) is None:
        return "ignored: no payment of this tenant"
    refunds = [r for r in (charge.get("refunds") or {}).get("data", []) if r.get("status") in ("succeeded", "pending")]
    if not refunds:
        # API versions that no longer embed the refunds: book the part of amount_refunded not booked yet.
        booked = payment.amount - await payments.refundable(session, payment)
        missing = from_minor(int(charge.get("amount_refunded") or 0), payment.currency) - booked
        refunds = [
            {"id": f"{charge['id']}:{charge.get('amount_refunded')}", "amount": to_minor(missing, payment.currency)}
        ]
    booked_now = []
    for refund in refunds:
        if int(refund.get("amount") or 0) <= 0:
            continue
        exists = (await session.execute(select(Payment.id).where(Payment.provider_ref == str(refund["id"])))).first()
        if exists is not None:
            continue
        amount = from_minor(int(refund["amount"]), payment.currency)
        await payments.record_refund(
            kernel, session, tenant, payment.id, amount=amount, provider_ref=str(refund["id"]), actor="stripe"
        )
        booked_now.append(str(amount))
    return f"refunds booked: {', '.join(booked_now)}" if booked_now else "refunds already booked"


def return_url_for(kernel: Any, tenant: TenantInfo, invoice: Invoice) -> str:
    return tenant_url(kernel, tenant, invoices.public_path(invoice) or "/")
