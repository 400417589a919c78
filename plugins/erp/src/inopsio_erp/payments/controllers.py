"""``/api/v1/erp/invoices/{id}/payments`` and ``/api/v1/erp/payments``: booking payments and refunds."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio_erp.invoices import services as invoices
from inopsio_erp.invoices.controllers import actor_of
from inopsio_erp.models import Payment
from inopsio_erp.payments import services
from inopsio_erp.payments.schemas import PaymentIn, PaymentOut, RefundIn
from inopsio_erp.totals import minor_unit


def payment_out(p: Payment) -> PaymentOut:
    return PaymentOut(
        id=p.id,
        invoice_id=p.invoice_id,
        kind=p.kind,
        method=p.method,
        amount=p.amount.quantize(minor_unit(p.currency)),
        currency=p.currency,
        received_on=p.received_on,
        reference=p.reference,
        note=p.note,
        provider_ref=p.provider_ref,
        refund_of_id=p.refund_of_id,
        created_at=p.created_at,
    )


class InvoicePaymentController(Controller):
    path = "/api/v1/erp/invoices/{invoice_id:uuid}/payments"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.payments.write"})
    async def record_payment(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        invoice_id: FromPath[UUID],
        data: JSONBody[PaymentIn],
    ) -> PaymentOut:
        """Book money received by bank transfer, cash or cheque; at most the open balance."""
        payment = await services.record_payment(
            kernel,
            db_session,
            tenant,
            invoice_id,
            amount=data.amount,
            method=data.method,
            received_on=data.received_on,
            reference=data.reference,
            note=data.note,
            actor=actor_of(request),
        )
        return payment_out(payment)

    @get("/", opt={"permission": "erp.payments.read"})
    async def list_invoice_payments(self, db_session: DbSession, invoice_id: FromPath[UUID]) -> list[PaymentOut]:
        await invoices.get_invoice(db_session, invoice_id)
        query = select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.created_at, Payment.id)
        return [payment_out(p) for p in (await db_session.execute(query)).scalars()]


class PaymentController(Controller):
    path = "/api/v1/erp/payments"
    tags = ["erp"]

    @get("/", opt={"permission": "erp.payments.read"})
    async def list_payments(
        self,
        db_session: DbSession,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> list[PaymentOut]:
        """Payment history, newest first."""
        query = select(Payment).order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit).offset(offset)
        return [payment_out(p) for p in (await db_session.execute(query)).scalars()]

    @get("/{payment_id:uuid}", opt={"permission": "erp.payments.read"})
    async def get_payment(self, db_session: DbSession, payment_id: FromPath[UUID]) -> PaymentOut:
        return payment_out(await services.get_payment(db_session, payment_id))

    @post("/{payment_id:uuid}/refunds", opt={"permission": "erp.payments.refund"})
    async def refund_payment(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        payment_id: FromPath[UUID],
        data: JSONBody[RefundIn],
    ) -> PaymentOut:
        """Refund a payment, whole or in part; card payments are refunded through Stripe first."""
        refund = await services.refund(kernel, db_session, tenant, payment_id, data, actor=actor_of(request))
        return payment_out(refund)
