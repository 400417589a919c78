"""``/api/v1/erp/stripe/webhook`` (Stripe calls it, signed) and ``/api/v1/erp/invoices/{id}/checkout``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, post
from litestar.params import FromPath, JSONBody

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio_erp.company import get_settings
from inopsio_erp.invoices import services as invoices
from inopsio_erp.stripe_gateway import services


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Part of the open balance to pay; all of it when omitted.
    amount: Decimal | None = None


class CheckoutOut(msgspec.Struct, kw_only=True):
    id: str
    url: str


class WebhookOut(msgspec.Struct, kw_only=True):
    received: bool
    outcome: str


@post("/api/v1/erp/invoices/{invoice_id:uuid}/checkout", opt={"permission": "erp.payments.write"}, tags=["erp"])
async def create_invoice_checkout(
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    invoice_id: FromPath[UUID],
    data: JSONBody[CheckoutIn | None] = None,
) -> CheckoutOut:
    """A Stripe Checkout session (a payment link) for the open balance or a part of it."""
    invoice = await invoices.get_invoice(db_session, invoice_id)
    session_id, url = await services.create_checkout(
        kernel,
        db_session,
        tenant,
        invoice,
        data.amount if data else None,
        return_url=services.return_url_for(kernel, tenant, invoice),
    )
    return CheckoutOut(id=session_id, url=url)


@post(
    "/api/v1/erp/stripe/webhook",
    opt={"public": True},
    tags=["erp"],
    status_code=200,
    request_max_body_size=1024 * 1024,
)
async def stripe_webhook(
    request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession
) -> WebhookOut:
    """Stripe's events for this tenant's account, verified with its signing secret; each books once."""
    payload = await request.body()
    row = await get_settings(db_session)
    event = services.verify(payload, request.headers.get("stripe-signature"), row, kernel)
    outcome = await services.receive(kernel, db_session, tenant, event)
    return WebhookOut(received=True, outcome=outcome)
