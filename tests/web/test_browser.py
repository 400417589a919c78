"""The shell in a real browser: sign-up to audit trail, keyboard-only sign-in, suspension page, axe-core."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pyotp
import pytest

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 42"


def _link_token(message: Any, path: str) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    found = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_\-%.]+)", body)
    assert found, body
    return str(found.group(1))


def _next_totp(secret: str) -> str:
    """A code the server accepts once the previous step's code was spent (the next time step)."""
    return str(pyotp.TOTP(secret).at(time.time() + 30))


async def _sign_in(page: Any, base: str, email: str, password: str, totp: str | None = None) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    if totp is not None:
        await page.wait_for_selector("#totp_code", state="visible")
        await page.fill("#totp_code", totp)
        await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")


async def test_sign_up_verify_2fa_invite_accept_role_change_and_audit_trail(
    browser: Any, live_server: Any, smtp_sink: Any, run_jobs: Any, assert_accessible: Any
) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    slug = f"acme-{secrets.token_hex(3)}"
    owner_email = f"owner-{slug}@example.com"
    base = f"http://{slug}.localhost:{port}"

    # Sign up on the platform's address: "check your mailbox"; the mailed link creates the workspace
    # (and so verifies the address), then its sign-in page opens.
    page = await browser.new_page()
    await page.goto(f"http://localhost:{port}/signup")
    await assert_accessible(page)
    await page.fill("#name", "Ada Owner")
    await page.fill("#email", owner_email)
    await page.fill("#password", PASSWORD)
    await page.fill("#tenant_name", "Acme Ltd")
    await page.fill("#tenant_slug", slug)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#signup-sent", state="visible")
    assert (await page.text_content("#signup-sent [data-answer=email]")) == owner_email
    assert await page.is_hidden("form[data-api='/api/v1/auth/signup']")
    await assert_accessible(page)
    await run_jobs(max_seconds=20)
    mailed = next(m for m in smtp_sink.messages if m["To"] == owner_email)
    await page.goto(f"http://localhost:{port}/signup/confirm?token={_link_token(mailed, '/signup/confirm')}")
    await assert_accessible(page)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/login?m=signed-up")
    await assert_accessible(page)

    # Sign in, turn on 2FA with the QR code's key, sign out, sign in with a TOTP code.
    await _sign_in(page, base, owner_email, PASSWORD)
    await assert_accessible(page)
    await page.goto(f"{base}/account")
    await page.click("[data-totp-start] button[type=submit]")
    await page.wait_for_selector("#totp-enrol", state="visible")
    secret = (await page.text_content("#totp-secret")) or ""
    assert len(secret) >= 16
    assert (await page.get_attribute("#totp-qr", "src") or "").startswith("data:image/svg+xml")
    await page.fill("#confirm_code", pyotp.TOTP(secret).now())
    await page.click("#totp-enrol button[type=submit]")
    await page.wait_for_selector("[data-testid=recovery-codes] li")
    assert len(await page.query_selector_all("[data-testid=recovery-codes] li")) == 10
    await assert_accessible(page)
    await page.click("[data-logout]")
    await page.wait_for_url(f"{base}/login")
    await _sign_in(page, base, owner_email, PASSWORD, totp=_next_totp(secret))

    # Invite a colleague; they accept in their own browser.
    colleague = f"colleague-{slug}@example.com"
    await page.goto(f"{base}/admin/members")
    await assert_accessible(page)
    await page.fill("#invite_email", colleague)
    await page.select_option("#invite_role", "member")
    await page.click("form[data-api='/api/v1/invitations'] button[type=submit]")
    await page.wait_for_selector(f"text={colleague} as member")
    await run_jobs(max_seconds=20)
    invitation = next(m for m in smtp_sink.messages if m["To"] == colleague)
    other = await browser.new_page()
    await other.goto(f"{base}/accept-invitation?token={_link_token(invitation, '/accept-invitation')}")
    await assert_accessible(other)
    await other.fill("#name", "Colleague")
    await other.fill("#password", PASSWORD + " too")
    await other.click("button[type=submit]")
    await other.wait_for_url(f"{base}/login?m=joined")
    await _sign_in(other, base, colleague, PASSWORD + " too")

    # The owner makes them a manager.
    await page.goto(f"{base}/admin/members")
    row = page.locator(f"tr[data-member='{colleague}']")
    await row.locator("select").select_option("manager")
    await row.locator("button[type=submit]").click()
    await page.wait_for_selector("text=Role changed.")

    # The audit log shows every step, newest first.
    await page.goto(f"{base}/admin/audit")
    await assert_accessible(page)
    actions = [await cell.text_content() for cell in await page.query_selector_all("tr[data-action] td:nth-child(2)")]
    for expected in [
        "tenant.created",
        "auth.email.verified",
        "auth.totp.enabled",
        "auth.signout",
        "auth.signin.succeeded",
        "member.invited",
        "member.joined",
        "member.role_changed",
    ]:
        assert any(expected == (a or "").strip() for a in actions), (expected, actions)
    # Filtering keeps only what was asked for.
    await page.fill("#f-action", "member.*")
    await page.click("form[role=search] button[type=submit]")
    await page.wait_for_url(re.compile(r".*action=member\.\*.*"))
    filtered = [await c.text_content() for c in await page.query_selector_all("tr[data-action] td:nth-child(2)")]
    assert filtered
    assert all((a or "").strip().startswith("member.") for a in filtered)


async def test_keyboard_only_sign_in(
    browser: Any, live_server: Any, make_tenant: Any, kernel: Any, assert_accessible: Any
) -> None:
    tenant = await make_tenant()
    email = f"keys-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, "member", verified=True)
    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://{tenant.slug}.localhost:{port}"
    page = await browser.new_page()
    await page.goto(f"{base}/login")
    await assert_accessible(page)
    # The email field has the focus on arrival; the fields follow in reading order; Enter submits.
    assert await page.evaluate("document.activeElement.id") == "email"
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "password"
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}/")
    # The menu is reachable by keyboard and shows where we are.
    assert await page.get_attribute("nav a[aria-current=page]", "href") == "/"


async def test_wrong_password_shows_a_readable_error_and_keeps_what_was_typed(
    browser: Any, live_server: Any, make_tenant: Any, assert_accessible: Any
) -> None:
    tenant = await make_tenant()
    port = live_server.url.rsplit(":", 1)[1]
    page = await browser.new_page()
    await page.goto(f"http://{tenant.slug}.localhost:{port}/login")
    await page.fill("#email", "nobody@example.com")
    await page.fill("#password", "not the password at all")
    await page.click("button[type=submit]")
    alert = page.locator("form [role=alert]")
    await alert.wait_for(state="visible")
    assert "password" in ((await alert.text_content()) or "").lower()
    assert await page.input_value("#email") == "nobody@example.com"
    await assert_accessible(page)


async def test_suspended_tenant_sees_the_suspension_page(
    browser: Any, live_server: Any, make_tenant: Any, kernel: Any, assert_accessible: Any
) -> None:
    tenant = await make_tenant()
    await kernel.tenants.suspend(tenant.id, "unpaid invoice")
    port = live_server.url.rsplit(":", 1)[1]
    page = await browser.new_page()
    response = await page.goto(f"http://{tenant.slug}.localhost:{port}/")
    assert response.status == 403
    assert await page.text_content("h1") == "This workspace is suspended"
    await assert_accessible(page)


async def test_every_shell_page_has_no_serious_accessibility_violation(
    browser: Any, live_server: Any, make_tenant: Any, kernel: Any, assert_accessible: Any
) -> None:
    tenant = await make_tenant()
    email = f"a11y-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, "owner", verified=True)
    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://{tenant.slug}.localhost:{port}"
    page = await browser.new_page()
    await _sign_in(page, base, email, PASSWORD)
    for path in [
        "/",
        "/account",
        "/admin/members",
        "/admin/roles",
        "/admin/settings",
        "/admin/audit",
        "/admin/webhooks",
        "/admin/usage",
        "/sample/notes",
        "/no-such-page",
        "/forgot-password",
    ]:
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        await assert_accessible(page)


async def test_operator_console_finds_suspends_and_charts_a_tenant(
    browser: Any, live_server: Any, make_tenant: Any, kernel: Any, assert_accessible: Any
) -> None:
    from inopsio.platform.auth import create_operator_token

    tenant = await make_tenant(name=f"Globex {secrets.token_hex(2)}")
    token = await create_operator_token(kernel.db, f"browser-{tenant.slug}")
    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://localhost:{port}"
    page = await browser.new_page()
    await page.goto(f"{base}/operator")
    await page.wait_for_url(f"{base}/operator/login")
    await assert_accessible(page)
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/operator")
    await page.fill("#search", tenant.slug)
    await page.click("form[role=search] button[type=submit]")
    row = page.locator(f"tr[data-tenant='{tenant.slug}']")
    await row.wait_for()
    await assert_accessible(page)
    page.on("dialog", lambda dialog: dialog.accept())
    await row.locator("button", has_text="Suspend").click()
    await page.wait_for_selector(f"tr[data-tenant='{tenant.slug}'] >> text=Resume")
    assert (await kernel.tenants.get(tenant.id)).status == "suspended"
    await row.locator("a").click()
    await page.wait_for_selector("#usage-table tbody tr")
    await assert_accessible(page)


async def test_a_notification_from_a_module_appears_live_in_the_shell(
    browser: Any, live_server: Any, make_tenant: Any, kernel: Any, drain_events: Any
) -> None:
    import uuid

    from inopsio.notifications import notify

    tenant = await make_tenant()
    email = f"bell-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, "member", verified=True)
    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://{tenant.slug}.localhost:{port}"
    page = await browser.new_page()
    await _sign_in(page, base, email, PASSWORD)
    # The server confirms the subscription once Redis has: from then on no event is missed.
    await page.wait_for_function("(window.inopsioFollowing || []).includes('kernel.notification.created')")
    me = await page.evaluate("fetch('/api/v1/me').then(r => r.json())")
    async with kernel.db.session(tenant.id) as session:
        await notify(kernel, session, "Deal won: Acme", recipient_id=uuid.UUID(me["user_id"]), link="/")
    await drain_events()
    await page.wait_for_selector("#notifications-count:not([hidden])")
    assert await page.text_content("#notifications-count") == "1"
    await page.click("#notifications-button")
    assert await page.get_attribute("#notifications-button", "aria-expanded") == "true"
    assert "Deal won: Acme" in (await page.text_content("#notifications-list") or "")
    await page.keyboard.press("Escape")
    assert await page.get_attribute("#notifications-button", "aria-expanded") == "false"
