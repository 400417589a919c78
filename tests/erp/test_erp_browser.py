"""The ERP's pages in a real browser (Debian's chromium through playwright): a customer is added,
an invoice written in the editor shows its totals live (computed by the server's engine), is issued,
partly paid by a transfer staff record, and the customer pays the rest by card on its link through
Stripe: Stripe.js (localstripe's copy, loaded under the page's real Content-Security-Policy)
tokenises the card, the server confirms a PaymentIntent with the official library, Stripe.js
completes 3-D Secure, localstripe sends its signed ``payment_intent.succeeded`` webhook to the ERP's
endpoint, which books it, and the page shows Paid."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_stripe import WEBHOOK_SECRET

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple 42"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
#: localstripe, with ``*.localhost`` resolved to the loopback address as browsers do (RFC 6761): its
#: webhooks go to the tenant's own address, ``<slug>.localhost``, which this machine's resolver lacks.
LOCALSTRIPE = """
import socket, sys
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
from localstripe.server import start
sys.argv = ["localstripe", "--port", sys.argv[1], "--from-scratch"]
start()
"""


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    pytest.importorskip("localstripe")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", LOCALSTRIPE, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def register_webhook(localstripe: str, url: str) -> None:
    """localstripe's own configuration call: send these events, signed with this secret, to ``url``."""
    body = {
        "url": url,
        "secret": WEBHOOK_SECRET,
        "events": ["payment_intent.succeeded", "payment_intent.payment_failed"],
    }
    request = urllib.request.Request(
        f"{localstripe}/_config/webhooks/inopsio-erp", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.1 A/AA violations, as tests/web/conftest.py's assert_accessible."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
            const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
            const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    return list(result)


@pytest_asyncio.fixture(loop_scope="session")
async def page() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on this machine: apt-get install chromium (CI installs it)")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        yield tab
        await browser.close()
        assert not errors, f"JavaScript errors on the pages: {errors}"


async def test_write_issue_and_pay_an_invoice_by_card_in_the_browser(
    page, live_server, kernel, make_tenant, client, sign_in, localstripe
):
    port = live_server.url.rsplit(":", 1)[1]
    tenant = await make_tenant()
    email = f"owner-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, "owner", verified=True)
    base = f"http://{tenant.slug}.localhost:{port}"
    # The tenant's Stripe account (here localstripe) and its webhook pointing at the tenant's address.
    api = await sign_in(tenant, "owner")
    stripe_settings = {
        "stripe_secret_key": "sk_test_tenant",
        "stripe_publishable_key": "pk_test_tenant",
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": localstripe,
    }
    assert (await client.patch("/api/v1/erp/settings", json=stripe_settings, headers=api)).status_code == 200
    register_webhook(localstripe, f"{base}/api/v1/erp/stripe/webhook")

    await page.goto(f"{base}/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")

    await page.goto(f"{base}/erp/customers")
    await page.fill("#c_name", "Browser Customer")
    await page.fill("#c_country", "DE")
    await page.click("text=Save customer")
    await page.wait_for_selector("#customers >> text=Browser Customer")

    await page.goto(f"{base}/erp/invoices/new")
    await page.select_option("#customer_id", label="Browser Customer (EUR)")
    await page.fill('[data-key="description"]', "Consulting")
    await page.fill('[data-key="quantity"]', "3")
    await page.fill('[data-key="unit_price"]', "0.125")
    await page.wait_for_selector('[data-total="total"]:has-text("0.38")')
    await page.click("#add-line")
    rows = page.locator("tr.line")
    await rows.nth(1).locator('[data-key="description"]').fill("Travel")
    await rows.nth(1).locator('[data-key="unit_price"]').fill("10")
    await page.wait_for_selector('[data-total="total"]:has-text("10.38")')
    await page.click("#save")
    await page.wait_for_url(re.compile(r"/erp/invoices/[0-9a-f-]{36}$"))
    invoice_id = page.url.rsplit("/", 1)[1]

    page.on("dialog", lambda dialog: dialog.accept())
    await page.click("text=Issue")
    await page.wait_for_selector("#balance")
    assert "Open" in await page.inner_text("#status")
    # Part of it arrives by bank transfer, recorded by staff; a mistyped date is refused under its field.
    await page.fill("#p_amount", "0.38")
    await page.fill("#p_date", "9999-12-31")
    await page.click("text=Record payment")
    await page.wait_for_selector("#p_date-error")
    assert "more than 7 days after today" in await page.inner_text("#p_date-error")
    assert await page.get_attribute("#p_date", "aria-invalid") == "true"
    await page.fill("#p_date", "")
    await page.click("text=Record payment")
    await page.wait_for_selector("#status:has-text('Partly paid')")

    # The customer's link: the card form, under the page's own policy (this context enforces CSP).
    await page.click("#customer-link")
    await page.wait_for_selector("h1:has-text('Invoice')")
    customer_url = page.url
    assert "Partly paid" in await page.inner_text("#status")
    await page.wait_for_selector("#card-element input[placeholder=number]")

    # axe-core, injected as tests/web does (a context that lets it in past the policy).
    checker = await page.context.browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        audited = await checker.new_page()
        await audited.goto(customer_url)
        await audited.wait_for_selector("#card-element input[placeholder=number]")
        violations = await axe_violations(audited)
        assert not violations, f"axe-core on the customer's page: {violations}"
    finally:
        await checker.close()

    # A card that asks for 3-D Secure (Stripe's test number 4000 0027 6000 3184).
    element = page.locator("#card-element")
    await element.locator("input[placeholder=number]").fill("4000002760003184")
    await element.locator("input[placeholder=exp_month]").fill("12")
    await element.locator("input[placeholder=exp_year]").fill("30")
    await element.locator("input[placeholder=cvc]").fill("123")
    await element.locator("input[placeholder=postal_code]").fill("10115")
    await page.click("#pay-card")
    await page.click("text=Complete authentication")  # Stripe.js confirmCardPayment's 3-D Secure step
    # Stripe's signed webhook books the payment; the page, polling, then shows it.
    await page.wait_for_selector("#status:text-is('Paid')", timeout=30_000)

    response = await client.get(f"/api/v1/erp/invoices/{invoice_id}/payments", headers=api)
    transfer, card = sorted(response.json(), key=lambda p: p["method"])
    assert (transfer["method"], transfer["amount"]) == ("bank_transfer", "0.38")
    assert (card["method"], card["amount"]) == ("stripe", "10.00")  # the open balance: no amount entered
    assert card["provider_ref"].startswith("pi_")
    invoice = (await client.get(f"/api/v1/erp/invoices/{invoice_id}", headers=api)).json()
    assert (invoice["status"], invoice["balance"]) == ("paid", "0.00")
    await page.goto(f"{base}/erp/invoices/{invoice_id}")
    await page.wait_for_selector("#status:text-is('Paid')")
