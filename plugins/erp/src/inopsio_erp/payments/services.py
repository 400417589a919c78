"""Booking money on invoices: payments (manual or from Stripe) and refunds, keeping each invoice's
paid amount, balance and status right, and publishing ``erp.payment.*`` / ``erp.invoice.paid``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.errors import Problem
from inopsio.tenancy.addresses import tenant_url
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp import formatting
from inopsio_erp.events import PaymentEvent, publish
from inopsio_erp.invoices import services as invoices
from inopsio_erp.models import Invoice, Payment
from inopsio_erp.totals import minor_unit
from inopsio_erp.validation import field_problem


def check_money(amount: Decimal, currency: str, pointer: str = "/amount") -> Decimal:
    if not amount.is_finite() or amount <= 0:
        raise field_problem(pointer, "the amount must be more than zero")
    if amount != amount.quantize(minor_unit(currency)):
        raise field_problem(
            pointer, f"{currency} amounts have at most {-minor_unit(currency).as_tuple().exponent} decimals"
        )
    return amount


#: How far after today (the tenant's calendar) a payment may be dated: a bank's value date can fall a
#: few days after the money is seen (weekends, bank holidays), never years ahead.
RECEIVED_AFTER_TODAY = dt.timedelta(days=7)
#: How far before the invoice's issue date a payment may be dated: a deposit or prepayment received up
#: to a year before the invoice is written is booked on it; anything older is a typo (0202 for 2022).
RECEIVED_BEFORE_ISSUE = dt.timedelta(days=365)


def check_received_on(received_on: dt.date, invoice: Invoice, tenant: TenantInfo) -> dt.date:
    """The day the money arrived, if an accountant would believe it: from a year before the invoice's
    issue date to a week after today; a 422 problem naming ``/received_on`` otherwise."""
    today = formatting.today(tenant)
    latest = today + RECEIVED_AFTER_TODAY
    if received_on > latest:
        raise field_problem(
            "/received_on",
            f"the payment date {received_on} is more than {RECEIVED_AFTER_TODAY.days} days after today"
            f" ({today}): book a payment once the money has arrived, dated at the latest {latest}",
            code="payment-date-out-of-range",
        )
    earliest = (invoice.issue_date or today) - RECEIVED_BEFORE_ISSUE
    if received_on < earliest:
        raise field_problem(
            "/received_on",
            f"the payment date {received_on} is more than a year before the invoice's issue date"
            f" ({invoice.issue_date or today}): the earliest date accepted is {earliest}",
            code="payment-date-out-of-range",
        )
    return received_on


def payment_event(
    invoice: Invoice, payment: Payment | None, amount: Decimal, method: str, reason: str | None = None
) -> PaymentEvent:
    return PaymentEvent(
        invoice_id=invoice.id,
        number=invoice.number,
        currency=invoice.currency,
        amount=amount,
        method=method,
        balance=invoices.balance(invoice),
        payment_id=payment.id if payment else None,
        reason=reason,
    )


async def record_payment(
    kernel: Any,
    session: AsyncSession,
    tenant: TenantInfo,
    invoice_id: UUID,
    *,
    amount: Decimal,
    method: str,
    received_on: dt.date | None = None,
    reference: str = "",
    note: str = "",
    provider_ref: str | None = None,
    actor: str | None = None,
    confirm_by_email: bool = False,
) -> Payment:
    """Book a payment; refused (422) when larger than the open balance, 409 on an invoice not open."""
    invoice = await invoices.get_invoice(session, invoice_id, lock=True)
    if invoice.kind != "invoice" or invoice.status not in invoices.OPEN_STATES:
        raise Problem(409, "invoice-not-open", f"Payments are booked on open invoices; this one is {invoice.status}.")
    check_money(amount, invoice.currency)
    received_on = check_received_on(received_on or formatting.today(tenant), invoice, tenant)
    open_balance = invoices.balance(invoice)
    if amount > open_balance:
        shown = open_balance.quantize(minor_unit(invoice.currency))
        raise field_problem(
            "/amount",
            f"the payment ({amount}) is larger than the open balance ({shown})",
            code="payment-exceeds-balance",
        )
    payment = Payment(
        invoice_id=invoice.id,
        kind="payment",
        method=method,
        amount=amount,
        currency=invoice.currency,
        received_on=received_on,
        reference=reference,
        note=note,
        provider_ref=provider_ref,
    )
    session.add(payment)
    invoice.amount_paid += amount
    invoices.refresh_status(invoice)
    await session.flush()
    await publish(kernel, session, "erp.payment.received", payment_event(invoice, payment, amount, method), actor=actor)
    if invoice.status == "paid":
        await publish(kernel, session, "erp.invoice.paid", invoices.invoice_event(invoice), actor=actor)
    if confirm_by_email:
        await send_confirmation(kernel, session, tenant, invoice, payment)
    return payment


async def send_confirmation(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, invoice: Invoice, payment: Payment
) -> None:
    """Queue the customer's payment confirmation in the payment's transaction (sent once it commits)."""
    email = invoice.customer_snapshot.get("email", "")
    if not email:
        return
    locale = tenant.settings.locale
    left = invoices.balance(invoice)
    path = invoices.public_path(invoice) or ""
    await kernel.mail.queue(
        session,
        tenant,
        to=email,
        template="erp/payment_received",
        context={
            "customer_name": invoice.customer_snapshot.get("name", ""),
            "number": invoice.number,
            "amount": formatting.money(payment.amount, invoice.currency, locale),
            "balance": formatting.money(left, invoice.currency, locale),
            "balance_open": left > 0,
            "link": tenant_url(kernel, tenant, path),
        },
    )


async def get_payment(session: AsyncSession, payment_id: UUID, *, lock: bool = False) -> Payment:
    query = select(Payment).where(Payment.id == payment_id)
    if lock:
        query = query.with_for_update()
    payment = (await session.execute(query)).scalar_one_or_none()
    if payment is None:
        raise Problem(404, "not-found", "No such payment.")
    return payment


async def refundable(session: AsyncSession, payment: Payment) -> Decimal:
    refunded = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.refund_of_id == payment.id, Payment.kind == "refund"
        )
    )
    return payment.amount - Decimal(refunded or 0)


async def record_refund(
    kernel: Any,
    session: AsyncSession,
    tenant: TenantInfo,
    payment_id: UUID,
    *,
    amount: Decimal | None,
    note: str = "",
    provider_ref: str | None = None,
    actor: str | None = None,
) -> Payment:
    """Book money given back on a payment (at most what is left of it); the invoice reopens by that much."""
    payment = await get_payment(session, payment_id, lock=True)
    if payment.kind != "payment":
        raise Problem(409, "not-a-payment", "Only a payment can be refunded.")
    invoice = await invoices.get_invoice(session, payment.invoice_id, lock=True)
    left = await refundable(session, payment)
    amount = left if amount is None else check_money(amount, payment.currency)
    if amount <= 0 or amount > left:
        raise field_problem("/amount", f"at most {left} of this payment can be refunded", code="refund-exceeds-payment")
    refund = Payment(
        invoice_id=invoice.id,
        kind="refund",
        method=payment.method,
        amount=amount,
        currency=payment.currency,
        received_on=formatting.today(tenant),
        note=note,
        provider_ref=provider_ref,
        refund_of_id=payment.id,
    )
    session.add(refund)
    invoice.amount_paid -= amount
    invoices.refresh_status(invoice)
    await session.flush()
    await publish(
        kernel, session, "erp.payment.refunded", payment_event(invoice, refund, amount, payment.method), actor=actor
    )
    return refund


async def refund(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, payment_id: UUID, data: Any, *, actor: str | None = None
) -> Payment:
    """A staff refund: a Stripe payment is refunded at Stripe first (its refund id books it once, whether
    this call or the ``charge.refunded`` webhook comes first); a manual one is only recorded."""
    payment = await get_payment(session, payment_id)
    provider_ref = None
    if payment.method == "stripe" and payment.kind == "payment":
        from inopsio_erp.stripe_gateway import services as gateway

        left = await refundable(session, payment)
        amount = left if data.amount is None else check_money(data.amount, payment.currency)
        if amount <= 0 or amount > left:
            raise field_problem(
                "/amount", f"at most {left} of this payment can be refunded", code="refund-exceeds-payment"
            )
        provider_ref = await gateway.create_refund(kernel, session, payment, amount)
        existing = (
            await session.execute(select(Payment).where(Payment.provider_ref == provider_ref))
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        data_amount: Decimal | None = amount
    else:
        data_amount = data.amount
    return await record_refund(
        kernel, session, tenant, payment_id, amount=data_amount, note=data.note, provider_ref=provider_ref, actor=actor
    )
