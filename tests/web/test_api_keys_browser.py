"""The API keys admin page in a real browser: who owns each key, and handing a leaver's key over."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 42"
SCREENSHOTS = Path.cwd() / "artifacts" / "browser"


async def _token_headers(client: Any, slug: str, email: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Tenant": slug}
    )
    assert response.status_code == 200, response.text
    return {"X-Tenant": slug, "Authorization": f"Bearer {response.json()['access_token']}"}


async def test_owner_sees_a_removed_members_key_does_nothing_and_hands_it_to_a_colleague(
    browser: Any, live_server: Any, client: Any, make_tenant: Any, kernel: Any, assert_accessible: Any
) -> None:
    tenant = await make_tenant(name="Acme Ltd")
    tag = secrets.token_hex(3)
    accounts = kernel.identity.accounts
    owner = await accounts.create_member(
        tenant, f"olive-{tag}@example.com", PASSWORD, "owner", name="Olive Owner", verified=True
    )
    leaver = await accounts.create_member(
        tenant, f"lee-{tag}@example.com", PASSWORD, "admin", name="Lee Leaver", verified=True
    )
    successor = await accounts.create_member(
        tenant, f"sam-{tag}@example.com", PASSWORD, "admin", name="Sam Successor", verified=True
    )
    keys = kernel.identity.api_keys
    await keys.create(tenant.id, leaver.id, "billing sync", ["kernel.members.read", "sample.notes.read"], None)
    await keys.create(tenant.id, owner.id, "reporting", ["sample.notes.read"], None)
    owner_headers = await _token_headers(client, tenant.slug, owner.email)
    assert (await client.delete(f"/api/v1/members/{leaver.id}", headers=owner_headers)).status_code == 204

    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://{tenant.slug}.localhost:{port}"
    page = await browser.new_page()
    await page.goto(f"{base}/login")
    await page.fill("#email", owner.email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    await page.click("nav a[href='/admin/api-keys']")
    await page.wait_for_url(f"{base}/admin/api-keys")
    await assert_accessible(page)

    row = page.locator("tr", has_text="billing sync")
    assert "Lee Leaver" in (await row.locator("[data-testid=owner]").text_content() or "")
    assert "Owner left" in (await row.locator("[data-testid=status]").text_content() or "")
    assert "nothing" in (await row.text_content() or "")
    other = page.locator("tr", has_text="reporting")
    assert "Olive Owner" in (await other.locator("[data-testid=owner]").text_content() or "")
    assert (await other.locator("[data-testid=status]").text_content() or "").strip() == "Active"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "api-keys-owner-removed.png"), full_page=True)

    await row.locator("select[name=user_id]").select_option(label=successor.name)
    await row.locator("button", has_text="Hand over").click()
    await page.wait_for_load_state("networkidle")
    row = page.locator("tr", has_text="billing sync")
    await row.locator("[data-testid=owner]", has_text="Sam Successor").wait_for()
    assert (await row.locator("[data-testid=status]").text_content() or "").strip() == "Active"
    assert "2 of 2" in (await row.text_content() or "")
    await assert_accessible(page)
    await page.screenshot(path=str(SCREENSHOTS / "api-keys-handed-over.png"), full_page=True)
