"""The browser's sign-in: an HttpOnly session cookie, CSRF protection, tenant checks and revocation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from inopsio.identity.models import AuthSession

PASSWORD = "correct horse battery staple 42"
Browser = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def browser(inopsio_app: Any) -> AsyncIterator[Browser]:
    """``await browser()``: a client with a cookie jar of its own, like one browser profile.

    The shared ``client`` fixture keeps cookies for the whole run; a session cookie left there would
    sign every later test in.
    """
    opened: list[httpx.AsyncClient] = []

    async def make(base_url: str = "http://localhost") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=inopsio_app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


async def member(kernel: Any, tenant: Any, role: str = "owner", email: str | None = None) -> str:
    email = email or f"{role}-{secrets.token_hex(5)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, role, verified=True)
    return email


async def web_login(browser: httpx.AsyncClient, tenant: Any, email: str) -> httpx.Response:
    response = await browser.post(
        "/api/v1/auth/web-login", json={"email": email, "password": PASSWORD}, headers={"X-Tenant": tenant.slug}
    )
    assert response.status_code == 200, response.text
    return response


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """``Set-Cookie`` headers by cookie name, as sent."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def attributes(header: str) -> set[str]:
    return {part.strip().split("=", 1)[0].lower() for part in header.split(";")[1:]}


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).rsplit(":", 1)[-1]


async def test_web_login_sets_an_httponly_session_cookie_and_a_readable_csrf_cookie(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    web = await browser()
    response = await web_login(web, tenant, email)

    body = response.json()
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert body["csrf_header"] == "X-CSRF-Token"
    assert response.headers["cache-control"] == "no-store"
    cookies = set_cookies(response)
    session_cookie, csrf_cookie = cookies["inopsio_session"], cookies["inopsio_csrf"]
    assert {"httponly", "samesite", "path", "max-age"} <= attributes(session_cookie)
    assert "samesite=lax" in session_cookie.lower()
    assert "path=/" in session_cookie.lower()
    assert "domain" not in attributes(session_cookie)
    # Plain http outside production: Secure would make the browser drop the cookie.
    assert "secure" not in attributes(session_cookie)
    assert "httponly" not in attributes(csrf_cookie)
    assert web.cookies["inopsio_csrf"] == body["csrf_token"]

    me = await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email


async def test_only_the_digest_of_the_cookie_is_stored_and_it_outlives_the_process_cache(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    web = await browser()
    response = await web_login(web, tenant, await member(kernel, tenant))
    secret = web.cookies["inopsio_session"]
    async with kernel.db.session(None) as session:
        row = (await session.execute(select(AuthSession).where(AuthSession.id == response.json()["session_id"]))).one()
    stored = row.AuthSession
    assert stored.kind == "web"
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (stored.secret_hash, stored.user_agent, stored.revoked_reason)

    # Every process's short cache may be gone (a restart): PostgreSQL still knows the session.
    kernel.identity.web_sessions.forget()
    me = await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 200, me.text


async def test_over_https_the_cookies_are_secure_and_host_prefixed(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    web = await browser("https://localhost")
    response = await web_login(web, tenant, await member(kernel, tenant))
    cookies = set_cookies(response)
    assert {"__Host-inopsio_session", "__Host-inopsio_csrf"} == set(cookies)
    for header in cookies.values():
        assert "secure" in attributes(header)
        assert "domain" not in attributes(header)
    assert "httponly" in attributes(cookies["__Host-inopsio_session"])
    me = await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 200, me.text


async def test_unsafe_request_by_cookie_needs_the_sessions_csrf_token(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    web = await browser()
    csrf = (await web_login(web, tenant, await member(kernel, tenant))).json()["csrf_token"]
    role = {"name": f"r{secrets.token_hex(3)}", "permissions": ["kernel.members.read"]}

    missing = await web.post("/api/v1/roles", json=role, headers={"X-Tenant": tenant.slug})
    assert missing.status_code == 403, missing.text
    assert problem_code(missing) == "csrf-failed"
    wrong = await web.post("/api/v1/roles", json=role, headers={"X-Tenant": tenant.slug, "X-CSRF-Token": csrf[:-2]})
    assert wrong.status_code == 403
    assert problem_code(wrong) == "csrf-failed"
    # Nothing was created by the refused requests.
    listed = await web.get("/api/v1/roles", headers={"X-Tenant": tenant.slug})
    assert role["name"] not in [r["name"] for r in listed.json()]

    created = await web.post("/api/v1/roles", json=role, headers={"X-Tenant": tenant.slug, "X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text


async def test_csrf_token_of_another_session_is_refused(kernel: Any, make_tenant: Any, browser: Browser) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    mine, theirs = await browser(), await browser()
    await web_login(mine, tenant, email)
    other_csrf = (await web_login(theirs, tenant, email)).json()["csrf_token"]
    response = await mine.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase 77"},
        headers={"X-Tenant": tenant.slug, "X-CSRF-Token": other_csrf},
    )
    assert response.status_code == 403
    assert problem_code(response) == "csrf-failed"


async def test_bearer_requests_need_no_csrf_token(
    kernel: Any, make_tenant: Any, sign_in: Any, client: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant, "owner")
    role = {"name": f"r{secrets.token_hex(3)}", "permissions": []}
    assert (await client.post("/api/v1/roles", json=role, headers=headers)).status_code == 201

    # A browser holding a cookie that also sends a bearer token is authenticated by the token alone.
    web = await browser()
    await web_login(web, tenant, await member(kernel, tenant))
    role = {"name": f"r{secrets.token_hex(3)}", "permissions": []}
    assert (await web.post("/api/v1/roles", json=role, headers=headers)).status_code == 201


async def test_cookie_of_tenant_a_is_refused_on_tenant_b(kernel: Any, make_tenant: Any, browser: Browser) -> None:
    a, b = await make_tenant(), await make_tenant()
    email = await member(kernel, a)
    await kernel.identity.accounts.create_member(b, email, None, "owner")
    web = await browser()
    await web_login(web, a, email)
    response = await web.get("/api/v1/me", headers={"X-Tenant": b.slug})
    assert response.status_code == 403
    assert problem_code(response) == "tenant-mismatch"


async def test_web_logout_needs_csrf_clears_the_cookies_and_ends_the_session(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    web = await browser()
    csrf = (await web_login(web, tenant, await member(kernel, tenant))).json()["csrf_token"]
    secret = web.cookies["inopsio_session"]

    refused = await web.post("/api/v1/auth/web-logout", headers={"X-Tenant": tenant.slug})
    assert refused.status_code == 403
    assert problem_code(refused) == "csrf-failed"

    response = await web.post("/api/v1/auth/web-logout", headers={"X-Tenant": tenant.slug, "X-CSRF-Token": csrf})
    assert response.status_code == 204, response.text
    cleared = set_cookies(response)
    assert {"inopsio_session", "inopsio_csrf"} <= set(cleared)
    assert all("max-age=0" in header.lower() for header in cleared.values())
    assert "inopsio_session" not in web.cookies

    # The old cookie, replayed, no longer signs anyone in, even once this process forgets it.
    replay = await browser()
    replay.cookies.set("inopsio_session", secret)
    kernel.identity.web_sessions.forget()
    me = await replay.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 401
    assert problem_code(me) == "session-ended"


async def test_revoking_the_session_from_another_device_ends_the_cookie(
    kernel: Any, make_tenant: Any, client: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    web = await browser()
    session_id = (await web_login(web, tenant, email)).json()["session_id"]
    tokens = (
        await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Tenant": tenant.slug}
        )
    ).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", "X-Tenant": tenant.slug}
    sessions = (await client.get("/api/v1/me/sessions", headers=bearer)).json()
    assert session_id in [s["id"] for s in sessions]

    assert (await client.delete(f"/api/v1/me/sessions/{session_id}", headers=bearer)).status_code == 204
    me = await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 401
    assert problem_code(me) == "session-ended"


async def test_changing_the_password_elsewhere_ends_the_cookie_session(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    laptop, phone = await browser(), await browser()
    await web_login(laptop, tenant, email)
    csrf = (await web_login(phone, tenant, email)).json()["csrf_token"]
    changed = await phone.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase 77"},
        headers={"X-Tenant": tenant.slug, "X-CSRF-Token": csrf},
    )
    assert changed.status_code == 204, changed.text
    assert (await laptop.get("/api/v1/me", headers={"X-Tenant": tenant.slug})).status_code == 401
    # The session that changed it goes on.
    assert (await phone.get("/api/v1/me", headers={"X-Tenant": tenant.slug})).status_code == 200


async def test_tampered_cookie_is_refused_but_does_not_block_signing_in(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    web = await browser()
    await web_login(web, tenant, email)
    stored = next(cookie for cookie in web.cookies.jar if cookie.name == "inopsio_session")
    stored.value = (stored.value or "")[:-3] + ("AAA" if not (stored.value or "").endswith("AAA") else "BBB")
    me = await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})
    assert me.status_code == 401
    assert problem_code(me) == "invalid-session"

    again = await web_login(web, tenant, email)
    assert again.json()["session_id"]
    assert (await web.get("/api/v1/me", headers={"X-Tenant": tenant.slug})).status_code == 200


async def test_web_login_applies_the_sign_in_checks_and_wants_json(
    kernel: Any, make_tenant: Any, browser: Browser
) -> None:
    tenant = await make_tenant()
    email = await member(kernel, tenant)
    web = await browser()
    wrong = await web.post(
        "/api/v1/auth/web-login",
        json={"email": email, "password": "not the password at all"},
        headers={"X-Tenant": tenant.slug},
    )
    assert wrong.status_code == 401
    assert problem_code(wrong) == "invalid-credentials"
    assert not wrong.headers.get_list("set-cookie")

    # A cross-site form cannot send JSON without a preflight; it could send this.
    form = await web.post(
        "/api/v1/auth/web-login",
        content=f'{{"email": "{email}", "password": "{PASSWORD}"}}',
        headers={"X-Tenant": tenant.slug, "Content-Type": "text/plain"},
    )
    assert form.status_code == 415
    assert problem_code(form) == "unsupported-media-type"
    assert not form.headers.get_list("set-cookie")
