"""The customer's view of an invoice, behind an unguessable link: ``/erp/pay/<token>`` (page),
``/erp/pay/<token>/pdf``, ``/erp/pay/<token>/checkout`` (the Pay button: a Stripe Checkout for the
open balance or the amount the customer enters), ``/erp/pay/<token>/card`` (card payment on the page
with Stripe.js, when the tenant set a publishable key) and ``/erp/pay/<token>/status`` (what the page
polls until Stripe's webhook has booked the payment).

The page is a plain Jinja2 template of this plugin until the web shell offers pages.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody
from litestar.response import Redirect

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio_erp import formatting
from inopsio_erp.company import get_settings
from inopsio_erp.documents.controllers import pdf_response
from inopsio_erp.documents.model import load_document
from inopsio_erp.invoices import services as invoices
from inopsio_erp.models import Invoice
from inopsio_erp.stripe_gateway import services as gateway
from inopsio_erp.totals import minor_unit
from inopsio_erp.validation import field_problem

#: The kernel's policy (``inopsio.app.SECURITY_HEADERS``) with Stripe.js allowed: its script, the
#: frames its card element uses and the API it posts the card to; only on a page offering card payment.
CARD_PAGE_CSP = (
    "default-src 'self'; script-src 'self' {js}; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "connect-src 'self' {api}; frame-src {frames}; font-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self' {checkout}"
)
#: The page with only the Checkout button: the kernel's policy, but the Pay form's answer redirects
#: to Stripe Checkout, and browsers hold a form's redirect to ``form-action`` too.
CHECKOUT_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self' {checkout}"
)
CHECKOUT_ORIGIN = "https://checkout.stripe.com"


class CardPaymentIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The card as Stripe.js tokenised it in the browser (``tok_...``).
    card_token: Annotated[str, msgspec.Meta(pattern=r"^tok_[A-Za-z0-9_]{1,200}$")]
    #: Empty: the open balance.
    amount: Annotated[str, msgspec.Meta(max_length=30)] = ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _amount(raw: str) -> Decimal | None:
    raw = raw.strip().replace(",", ".")
    if not raw:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise field_problem("/amount", "enter an amount like 120.50") from None


_env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
)
STATUS_LABELS = {
    "issued": "Open",
    "partially_paid": "Partly paid",
    "paid": "Paid",
    "overdue": "Overdue",
    "void": "Void",
    "credited": "Credited",
}
#: No caching anywhere, no referrer leaking the token to other sites.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


async def _by_token(db_session: Any, token: str) -> Invoice:
    invoice = await invoices.get_by_token(db_session, token)
    if invoice is None:
        raise Problem(404, "not-found", "There is no invoice at this address.")
    return invoice


@get("/erp/pay/{token:str}", opt={"public": True}, tags=["erp"], include_in_schema=False)
async def public_invoice_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    token: FromPath[str],
) -> Response[str]:
    invoice = await _by_token(db_session, token)
    settings = await get_settings(db_session)
    locale = tenant.settings.locale

    def money(value: Decimal) -> str:
        return formatting.money(value, invoice.currency, locale)

    lines = [
        {
            "description": line.description,
            "quantity": f"{line.quantity.normalize():f}" + (f" {line.unit}" if line.unit else ""),
            "unit_price": formatting.unit_price(line.unit_price, invoice.currency, locale),
            "amount": money(line.amount),
        }
        for line in await invoices.lines_of(db_session, invoice.id)
    ]
    balance = invoices.balance(invoice)
    totals = [("Subtotal", money(invoice.subtotal), False)]
    if invoice.discount_total:
        totals.append(("Discount", "-" + money(invoice.discount_total), False))
    for tax in invoice.tax_breakdown:
        label = f"{tax['name']} ({Decimal(tax['rate']).normalize():f} %{', included' if tax['inclusive'] else ''})"
        totals.append((label, money(Decimal(tax["amount"])), False))
    totals.append(("Total", money(invoice.total), True))
    if invoice.kind == "invoice":
        if invoice.credited_total:
            totals.append(("Credited", "-" + money(invoice.credited_total), False))
        if invoice.amount_paid:
            totals.append(("Paid", "-" + money(invoice.amount_paid), False))
        totals.append(("Balance due", money(balance), True))
    base = request.url.path.rstrip("/")
    can_pay = invoice.kind == "invoice" and invoice.status in invoices.OPEN_STATES and bool(settings.stripe_secret_key)
    card = can_pay and gateway.card_payments_enabled(settings)
    headers = dict(PRIVATE_HEADERS)
    card_context: dict[str, Any] = {}
    if can_pay and not card:
        checkout = CHECKOUT_ORIGIN if not settings.stripe_api_base else gateway.stripe_api_origin(settings)
        headers["Content-Security-Policy"] = CHECKOUT_PAGE_CSP.format(checkout=checkout)
    if card:
        js_url = gateway.stripe_js_url(settings)
        js, api = _origin(js_url), gateway.stripe_api_origin(settings)
        # Stripe's card element lives in frames of js.stripe.com; 3-D Secure pages come from hooks.stripe.com.
        frames = js if settings.stripe_api_base else f"{js} https://hooks.stripe.com"
        checkout = CHECKOUT_ORIGIN if not settings.stripe_api_base else api
        headers["Content-Security-Policy"] = CARD_PAGE_CSP.format(js=js, api=api, frames=frames, checkout=checkout)
        card_context = {
            "stripe_js_url": js_url,
            "pay_js_url": kernel.web.assets.url("erp/pay.js"),
            "publishable_key": settings.stripe_publishable_key,
            "card_url": f"{base}/card",
            "status_url": f"{base}/status",
        }
    html = _env.get_template("erp/public/invoice.html").render(
        lang=locale.split("_")[0],
        title="Credit note" if invoice.kind == "credit_note" else "Invoice",
        invoice=invoice,
        seller=settings.company_name or tenant.settings.display_name or tenant.name,
        color=settings.color or "#1f6feb",
        status_label=STATUS_LABELS.get(invoice.status, invoice.status),
        issue_date=formatting.date(invoice.issue_date, locale),
        due_date=formatting.date(invoice.due_date, locale) if invoice.kind == "invoice" else "",
        lines=lines,
        totals=totals,
        balance=money(balance),
        balance_plain=f"{balance.quantize(minor_unit(invoice.currency)):f}",
        can_pay=can_pay,
        card=card,
        amount_paid=f"{invoice.amount_paid.quantize(minor_unit(invoice.currency)):f}",
        pdf_url=f"{base}/pdf",
        checkout_url=f"{base}/checkout",
        paid_notice=request.query_params.get("paid") == "1",
        **card_context,
    )
    return Response(html, media_type="text/html", headers=headers)


@get("/erp/pay/{token:str}/pdf", opt={"public": True}, tags=["erp"], include_in_schema=False)
async def public_invoice_pdf(tenant: CurrentTenant, db_session: DbSession, token: FromPath[str]) -> Response[bytes]:
    invoice = await _by_token(db_session, token)
    response = await pdf_response(await load_document(db_session, tenant, invoice), inline=True)
    response.headers.update(PRIVATE_HEADERS)
    return response


@post("/erp/pay/{token:str}/checkout", opt={"public": True}, tags=["erp"], include_in_schema=False)
async def public_checkout(
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    token: FromPath[str],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """The Pay button: to Stripe Checkout for the amount entered (the whole open balance when empty)."""
    invoice = await _by_token(db_session, token)
    amount = _amount(data.get("amount") or "")
    _, url = await gateway.create_checkout(
        kernel, db_session, tenant, invoice, amount, return_url=gateway.return_url_for(kernel, tenant, invoice)
    )
    return Redirect(url, status_code=303)


@post("/erp/pay/{token:str}/card", opt={"public": True}, tags=["erp"], include_in_schema=False, status_code=200)
async def public_card_payment(
    kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession, token: FromPath[str], data: JSONBody[CardPaymentIn]
) -> Response[dict[str, str]]:
    """Pay by card on the page: a PaymentIntent confirmed with the card Stripe.js tokenised. The
    answer's ``status`` is ``succeeded`` or ``requires_action`` (the page then completes 3-D Secure
    with Stripe.js and the ``client_secret``); the payment is booked when Stripe's webhook arrives."""
    invoice = await _by_token(db_session, token)
    result = await gateway.pay_by_card(kernel, db_session, tenant, invoice, _amount(data.amount), data.card_token)
    return Response(result, headers=PRIVATE_HEADERS)


@get("/erp/pay/{token:str}/status", opt={"public": True}, tags=["erp"], include_in_schema=False)
async def public_invoice_status(db_session: DbSession, token: FromPath[str]) -> Response[dict[str, str]]:
    """The invoice's state and amount paid, which the page polls after a card payment."""
    invoice = await _by_token(db_session, token)
    body = {"status": invoice.status, "amount_paid": f"{invoice.amount_paid.quantize(minor_unit(invoice.currency)):f}"}
    return Response(body, headers=PRIVATE_HEADERS)
