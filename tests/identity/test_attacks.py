"""Bad input and attacks on identity: forged and misused tokens, replays, payloads in text fields,
oversized bodies and password guessing. Each gets a clear 4xx problem document and changes nothing,
which every test checks by reading the state afterwards."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy import func, select, text

from inopsio.errors import PROBLEM_MEDIA_TYPE
from inopsio.identity.emailed_tokens import RESET_PASSWORD, issue
from inopsio.identity.models import AuditEntry, AuthSession, Invitation, Membership, User
from inopsio.identity.throttle import source_of
from inopsio.identity.totp import totp_for

PASSWORD = "correct horse battery staple 42"
NOTES = "/api/v1/sample/notes/"
_addresses = itertools.count(1)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:inopsio:problem:{code}", body
    assert body["status"] == status, body
    assert body["detail"], body
    return body


@pytest_asyncio.fixture
async def web(inopsio_app: Any, kernel: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client from an address of its own, so the per-address sign-in throttle sees only this test."""
    n = next(_addresses)
    address = f"203.0.{113 + n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=inopsio_app, client=(address, 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{kernel.settings.base_domain}") as client:
        yield client


async def new_member(kernel: Any, tenant: Any, role: str = "owner") -> str:
    email = f"{role}-{secrets.token_hex(5)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, role, verified=True)
    return email


async def login(client: httpx.AsyncClient, slug: str, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password, **extra}, headers={"X-Tenant": slug}
    )


def bearer(slug: str, token: str) -> dict[str, str]:
    return {"X-Tenant": slug, "Authorization": f"Bearer {token}"}


async def note_titles(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get(NOTES, params={"limit": 100}, headers=headers)
    assert response.status_code == 200, response.text
    return sorted(n["title"] for n in response.json())


async def sessions_of(kernel: Any, tenant: Any, email: str) -> list[AuthSession]:
    async with kernel.db.session(tenant.id) as session:
        user_id = (await session.execute(select(User.id).where(User.email == email))).scalar_one()
        rows = await session.execute(select(AuthSession).where(AuthSession.user_id == user_id))
        return list(rows.scalars())


async def audit_actions(kernel: Any, tenant: Any) -> list[str]:
    async with kernel.db.session(tenant.id) as session:
        rows = await session.execute(select(AuditEntry.action).order_by(AuditEntry.occurred_at))
        return list(rows.scalars())


# -- forged and misused access tokens ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(kernel: Any, token: str) -> dict[str, str]:
    """Variants of a real access token that must all be refused."""
    keys = kernel.identity.keys
    header_b64, payload_b64, signature_b64 = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = keys.current_kid
    # One character of the payload changed (the signature no longer matches).
    middle = len(payload_b64) // 2
    flipped = "A" if payload_b64[middle] != "A" else "B"
    tampered = f"{header_b64}.{payload_b64[:middle]}{flipped}{payload_b64[middle + 1 :]}.{signature_b64}"
    # The role claim raised, signature kept.
    escalated = _b64(json.dumps({**claims, "role": "owner"}).encode())
    now = int(time.time())
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return {
        "tampered payload": tampered,
        "escalated role claim": f"{header_b64}.{escalated}.{signature_b64}",
        "expired": jwt.encode(
            {**claims, "iat": now - 3600, "exp": now - 60}, keys.current, algorithm="HS256", headers={"kid": kid}
        ),
        "alg none": f"{none_header}.{payload_b64}.",
        "alg none, signature kept": f"{none_header}.{payload_b64}.{signature_b64}",
        "wrong key": jwt.encode(claims, "k" * 64, algorithm="HS256", headers={"kid": kid}),
        "unknown kid": jwt.encode(claims, keys.current, algorithm="HS256", headers={"kid": "not-a-key-of-ours"}),
        "no kid": jwt.encode(claims, keys.current, algorithm="HS256"),
        "HS256 with the kid as key": jwt.encode(claims, kid, algorithm="HS256", headers={"kid": kid}),
        "HS256 with a one-byte key": jwt.encode(claims, "0", algorithm="HS256", headers={"kid": kid}),
        "HS512 with the right key": jwt.encode(claims, keys.current, algorithm="HS512", headers={"kid": kid}),
        "not a JWT": "definitely.not.a-token",
    }


# Forging with weak keys is the point here.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_forged_access_tokens_are_refused_and_change_nothing(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    member = await sign_in(tenant, "member")
    before = await note_titles(client, member)
    token = member["Authorization"].removeprefix("Bearer ")
    for name, forged in forged_tokens(kernel, token).items():
        headers = bearer(tenant.slug, forged)
        for response in (
            await client.get("/api/v1/me", headers=headers),
            await client.post(NOTES, json={"title": f"forged: {name}"}, headers=headers),
        ):
            body = assert_problem(response, 401, "invalid-token")
            assert "invalid_token" in response.headers["www-authenticate"], name
            assert token not in json.dumps(body), "a problem never echoes a credential"
        if name == "expired":
            assert "expired" in body["detail"]
    # The genuine token still works, and nothing was written with a forged one.
    assert await note_titles(client, member) == before


async def test_token_of_one_tenant_is_refused_on_another(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant_a, tenant_b = await make_tenant(), await make_tenant()
    a_owner, b_owner = await sign_in(tenant_a, "owner"), await sign_in(tenant_b, "owner")
    a_notes, b_notes = await note_titles(client, a_owner), await note_titles(client, b_owner)
    a_token = a_owner["Authorization"]
    base = kernel.settings.base_domain
    attempts = {
        "X-Tenant B": ({"Authorization": a_token, "X-Tenant": tenant_b.slug}, 403, "tenant-mismatch"),
        "host B": ({"Authorization": a_token, "Host": f"{tenant_b.slug}.{base}"}, 403, "tenant-mismatch"),
        "host A, X-Tenant B": (
            {"Authorization": a_token, "Host": f"{tenant_a.slug}.{base}", "X-Tenant": tenant_b.slug},
            400,
            "tenant-mismatch",
        ),
    }
    for name, (headers, status, code) in attempts.items():
        for response in (
            await client.get(NOTES, headers=headers),
            await client.post(NOTES, json={"title": f"cross-tenant {name}"}, headers=headers),
            await client.patch("/api/v1/tenant/settings", json={"display_name": "pwned"}, headers=headers),
            await client.post(
                "/api/v1/api-keys", json={"name": "x", "permissions": ["sample.notes.read"]}, headers=headers
            ),
        ):
            assert_problem(response, status, code)
    assert await note_titles(client, a_owner) == a_notes
    assert await note_titles(client, b_owner) == b_notes
    assert (await kernel.tenants.get(tenant_b.id)).settings.display_name != "pwned"
    keys = await client.get("/api/v1/api-keys", headers=b_owner)
    assert keys.status_code == 200
    assert keys.json() == []


async def test_reused_refresh_token_ends_its_whole_session(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    first = (await login(web, tenant.slug, email)).json()
    second = await web.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers={"X-Tenant": tenant.slug}
    )
    assert second.status_code == 200, second.text
    replay = await web.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers={"X-Tenant": tenant.slug}
    )
    assert_problem(replay, 401, "refresh-token-reused")
    # The thief's replay ended the family: the legitimate newer tokens stop working too.
    latest = second.json()
    assert_problem(
        await web.post(
            "/api/v1/auth/refresh", json={"refresh_token": latest["refresh_token"]}, headers={"X-Tenant": tenant.slug}
        ),
        401,
        "session-ended",
    )
    assert_problem(
        await web.get("/api/v1/me", headers=bearer(tenant.slug, latest["access_token"])), 401, "session-ended"
    )
    [session] = await sessions_of(kernel, tenant, email)
    assert session.revoked_at is not None
    assert session.revoked_reason == "refresh token reused"
    assert "auth.refresh_token.reused" in await audit_actions(kernel, tenant)


async def test_replayed_totp_code_is_refused_and_opens_no_session(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [float(int(time.time()) // 30 * 30 + 5)]
    monkeypatch.setattr(kernel.identity.totp, "clock", lambda: now[0])
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    headers = bearer(tenant.slug, (await login(web, tenant.slug, email)).json()["access_token"])
    secret = (await web.post("/api/v1/me/totp", headers=headers)).json()["secret"]
    confirmed = await web.post("/api/v1/me/totp/confirm", json={"code": totp_for(secret).at(now[0])}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    now[0] += 30
    code = totp_for(secret).at(now[0])
    assert (await login(web, tenant.slug, email, totp_code=code)).status_code == 200
    sessions = len(await sessions_of(kernel, tenant, email))
    replay = await login(web, tenant.slug, email, totp_code=code)
    assert_problem(replay, 401, "invalid-totp")
    assert "access_token" not in replay.text
    assert len(await sessions_of(kernel, tenant, email)) == sessions
    assert (await kernel.identity.accounts.user_by_email(email)).totp_enabled_at is not None


def _token_in(message: Any) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            found = re.search(r"token=([A-Za-z0-9_\-%.]+)", part.get_content())
            if found:
                return found.group(1).replace("%5F", "_")
    raise AssertionError("no token link in the message")


async def _password_hash(kernel: Any, email: str) -> str:
    user = await kernel.identity.accounts.user_by_email(email)
    return str(user.password_hash)


async def test_reset_token_works_once_and_never_after_expiry(
    client: Any, kernel: Any, make_tenant: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    forgot = await client.post("/api/v1/auth/password/forgot", json={"email": email}, headers={"X-Tenant": tenant.slug})
    assert forgot.status_code == 202, forgot.text
    await run_jobs()
    [message] = smtp_sink.to(email)
    token = _token_in(message)
    reset = {"token": token, "password": "a brand new passphrase 77"}
    first = await client.post("/api/v1/auth/password/reset", json=reset, headers={"X-Tenant": tenant.slug})
    assert first.status_code == 204, first.text
    after_first = await _password_hash(kernel, email)
    again = await client.post(
        "/api/v1/auth/password/reset",
        json={**reset, "password": "an attacker's passphrase 88"},
        headers={"X-Tenant": tenant.slug},
    )
    assert_problem(again, 400, "invalid-token")
    assert await _password_hash(kernel, email) == after_first

    user = await kernel.identity.accounts.user_by_email(email)
    async with kernel.db.session(tenant.id) as session:
        expired = await issue(session, user.id, RESET_PASSWORD, dt.timedelta(seconds=-1))
    late = await client.post(
        "/api/v1/auth/password/reset",
        json={"token": expired, "password": "an attacker's passphrase 88"},
        headers={"X-Tenant": tenant.slug},
    )
    assert_problem(late, 400, "invalid-token")
    assert await _password_hash(kernel, email) == after_first


async def test_invitation_cannot_be_taken_by_another_address(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant, elsewhere = await make_tenant(), await make_tenant()
    admin = await sign_in(tenant, "admin")
    invited = f"invited-{secrets.token_hex(4)}@example.com"
    created = await client.post("/api/v1/invitations", json={"email": invited, "role": "manager"}, headers=admin)
    assert created.status_code == 201, created.text
    await run_jobs()
    [message] = smtp_sink.to(invited)
    token = _token_in(message)
    # Someone else who got hold of the link, signed in here (a viewer) or in another tenant.
    for headers, status, code in (
        (await sign_in(tenant, "viewer"), 403, "invitation-for-another-email"),
        ({**await sign_in(elsewhere, "owner"), "X-Tenant": tenant.slug}, 403, "tenant-mismatch"),
    ):
        response = await client.post(
            "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}, headers=headers
        )
        assert_problem(response, status, code)
    async with kernel.db.session(tenant.id) as session:
        invitation = (await session.execute(select(Invitation).where(Invitation.email == invited))).scalar_one()
        assert invitation.accepted_at is None
        joined = await session.execute(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(User.email == invited)
        )
        assert joined.scalar() == 0
    assert await kernel.identity.accounts.user_by_email(invited) is None


# -- payloads in text fields ------------------------------------------------------------------------------

PAYLOADS = {
    "sql": "'; DROP TABLE users; --",
    "sql union": "x' UNION SELECT password_hash FROM users --",
    "script": "<script>alert(1)</script>",
    "html attribute": '"><img src=x onerror=alert(1)>',
    "template": "{{ 7*7 }}{% raw %}",
    "nul": "before\u0000after",
    "rtl": "\u202egnp.exe\u202c admin",
    "emoji and combining": "Zoë 👩‍💻 e\u0301",
    "long": "A" * 5000,
}


def _refused_or_verbatim(response: httpx.Response, payload: str, echoed: Any, what: str) -> bool:
    """True when stored verbatim (and returned as JSON), False when refused with a 4xx problem."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), f"{what}: {response.text[:300]}"
        assert response.json()["type"].startswith("urn:inopsio:problem:"), what
        return False
    assert response.headers["content-type"].startswith("application/json"), what
    assert response.headers.get("x-content-type-options") == "nosniff", what
    assert echoed == payload, f"{what}: stored {echoed!r}, sent {payload!r}"
    return True


def _refused_or_accepted(response: httpx.Response, what: str) -> bool:
    """True when accepted for later (202, sign-up), False when refused with a 4xx problem."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), f"{what}: {response.text[:300]}"
        return False
    assert response.status_code == 202, f"{what}: {response.text[:300]}"
    return True


@pytest.mark.parametrize("kind", list(PAYLOADS))
async def test_payloads_in_text_fields_are_refused_or_stored_verbatim(
    kind: str, client: Any, kernel: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    payload = PAYLOADS[kind]
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")

    email = f"payload-{secrets.token_hex(4)}@example.com"
    signup = await client.post(
        "/api/v1/auth/signup",
        json={
            "email": email,
            "password": PASSWORD,
            "name": payload,
            "tenant_slug": f"p-{secrets.token_hex(5)}",
            "tenant_name": payload,
        },
    )
    if _refused_or_accepted(signup, "sign-up"):
        await run_jobs()
        [message] = smtp_sink.to(email)
        link = re.search(r"/signup/confirm\?token=([\w-]+)", message.get_body(("plain",)).get_content())
        assert link, "sign-up link"
        created = await client.post("/api/v1/auth/signup/confirm", json={"token": link.group(1)})
        if _refused_or_verbatim(created, payload, created.json().get("tenant", {}).get("name"), "sign-up tenant name"):
            user = await kernel.identity.accounts.user_by_email(email)
            assert user.name == payload.strip()[:200]

    for field in ("name", "tenant_slug", "email"):
        body = {"email": "x@example.com", "password": PASSWORD, "tenant_slug": "ok-slug", "tenant_name": "ok"}
        response = await client.post("/api/v1/auth/signup", json={**body, field: payload})
        assert response.status_code < 500, f"sign-up {field}: {response.text[:300]}"
        if field != "name":
            assert response.status_code in (400, 409, 422), f"sign-up {field}: {response.text[:300]}"

    role_name = await client.post("/api/v1/roles", json={"name": payload, "permissions": []}, headers=owner)
    assert_problem(
        role_name,
        400 if len(payload) > 50 or len(payload) < 2 else 422,
        "validation-error" if len(payload) > 50 else "invalid-role-name",
    )
    role = await client.post(
        "/api/v1/roles", json={"name": "payload-role", "description": payload, "permissions": []}, headers=owner
    )
    if _refused_or_verbatim(role, payload, role.json().get("description"), "role description"):
        listed = (await client.get("/api/v1/roles", headers=owner)).json()
        assert [r["description"] for r in listed if r["name"] == "payload-role"] == [payload]

    key = await client.post(
        "/api/v1/api-keys", json={"name": payload, "permissions": ["sample.notes.read"]}, headers=owner
    )
    if _refused_or_verbatim(key, payload, key.json().get("name"), "API key name"):
        assert [k["name"] for k in (await client.get("/api/v1/api-keys", headers=owner)).json()] == [payload]

    settings = await client.patch("/api/v1/tenant/settings", json={"display_name": payload}, headers=owner)
    if _refused_or_verbatim(settings, payload, settings.json().get("display_name"), "display name"):
        assert (await kernel.tenants.get(tenant.id)).settings.display_name == payload

    invitation = await client.post("/api/v1/invitations", json={"email": payload, "role": "member"}, headers=owner)
    assert invitation.status_code in (400, 422), invitation.text
    assert invitation.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)

    note = await client.post(NOTES, json={"title": payload, "body": payload}, headers=owner)
    if _refused_or_verbatim(note, payload, note.json().get("title"), "note title"):
        read = await client.get(f"{NOTES}{note.json()['id']}", headers=owner)
        assert read.json() == {"id": note.json()["id"], "title": payload, "body": payload}

    # Nothing was executed: the users table is still there and still answers.
    async with kernel.db.session(None) as session:
        assert (await session.execute(text("SELECT to_regclass('public.users') IS NOT NULL"))).scalar()
    assert (await client.get("/api/v1/me", headers=owner)).status_code == 200


# -- size and guessing --------------------------------------------------------------------------------------


async def test_oversized_body_is_refused_with_413_and_writes_nothing(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    before = await note_titles(client, owner)
    big = json.dumps({"title": "big", "body": "x" * (kernel.settings.max_body_bytes + 1)})
    response = await client.post(NOTES, content=big, headers={**owner, "Content-Type": "application/json"})
    assert_problem(response, 413, "request-too-large")
    login_response = await client.post(
        "/api/v1/auth/login", content=big, headers={"X-Tenant": tenant.slug, "Content-Type": "application/json"}
    )
    assert_problem(login_response, 413, "request-too-large")
    assert await note_titles(client, owner) == before


async def test_password_guessing_reaches_a_lockout_with_the_time_left(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fewer free attempts than the default keep the test short.
    monkeypatch.setattr(kernel.identity.accounts.throttle, "max_failures", 5)
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    for attempt in range(5):
        assert_problem(await login(web, tenant.slug, email, f"guess number {attempt}"), 401, "invalid-credentials")
    locked = await login(web, tenant.slug, email, "guess number 5")
    body = assert_problem(locked, 429, "login-locked")
    retry_after = int(locked.headers["retry-after"])
    assert 0 < retry_after <= kernel.settings.login_lockout_seconds
    assert body["retry_after"] == retry_after
    minutes, seconds = divmod(retry_after, 60)
    assert f"{minutes} min {seconds} s" in body["detail"]
    # Locked means locked: the right password opens no session either.
    right = await login(web, tenant.slug, email)
    assert_problem(right, 429, "login-locked")
    assert await sessions_of(kernel, tenant, email) == []
    assert (await audit_actions(kernel, tenant)).count("auth.signin.failed") == 5


@contextlib.asynccontextmanager
async def client_at(inopsio_app: Any, kernel: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=inopsio_app, client=(address, 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{kernel.settings.base_domain}") as client:
        yield client


def fresh_address() -> str:
    return f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


async def test_the_holder_signs_in_from_their_own_address_while_an_attacker_hammers_from_another(
    inopsio_app: Any, kernel: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    other_tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    async with client_at(inopsio_app, kernel, fresh_address()) as attacker:
        statuses = [
            (await login(attacker, other_tenant.slug, email, f"guess {n}")).status_code
            for n in range(kernel.settings.login_max_failures + 5)
        ]
    assert statuses == [401] * kernel.settings.login_max_failures + [429] * 5
    async with client_at(inopsio_app, kernel, fresh_address()) as holder:
        signed_in = await login(holder, tenant.slug, email)
    assert signed_in.status_code == 200, signed_in.text


async def test_failures_from_one_address_make_each_further_attempt_from_there_wait_longer(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any
) -> None:
    throttle = kernel.identity.accounts.throttle
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    for attempt in range(throttle.max_failures):
        assert_problem(await login(web, tenant.slug, email, f"guess {attempt}"), 401, "invalid-credentials")
    waiting = assert_problem(await login(web, tenant.slug, email, "one more"), 429, "login-locked")
    assert 25 <= waiting["retry_after"] <= 30
    # Each failure after the first wait doubles the next one, up to the lockout length.
    n = throttle.max_failures
    assert [throttle.delay_after(n + k) for k in range(7)] == [30, 60, 120, 240, 480, 900, 900]
    assert throttle.delay_after(n - 1) == 0


async def test_spraying_from_many_addresses_locks_the_account_except_where_its_holder_signed_in_before(
    inopsio_app: Any, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel.identity.accounts.throttle, "spray_sources", 3)
    tenant = await make_tenant()
    email = await new_member(kernel, tenant)
    home = fresh_address()
    async with client_at(inopsio_app, kernel, home) as holder:
        assert (await login(holder, tenant.slug, email)).status_code == 200
    for _ in range(3):
        async with client_at(inopsio_app, kernel, fresh_address()) as bot:
            assert_problem(await login(bot, tenant.slug, email, "spray password 1"), 401, "invalid-credentials")
    async with client_at(inopsio_app, kernel, fresh_address()) as elsewhere:
        locked = assert_problem(await login(elsewhere, tenant.slug, email), 429, "login-locked")
    assert 0 < locked["retry_after"] <= kernel.settings.login_lockout_seconds
    async with client_at(inopsio_app, kernel, home) as holder:
        assert (await login(holder, tenant.slug, email)).status_code == 200


async def test_one_address_failing_on_many_accounts_is_locked_out_and_no_one_else_is(
    inopsio_app: Any, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel.identity.accounts.throttle, "address_max_failures", 3)
    tenant = await make_tenant()
    victim = await new_member(kernel, tenant)
    async with client_at(inopsio_app, kernel, fresh_address()) as stuffer:
        for n in range(3):
            assert_problem(
                await login(stuffer, tenant.slug, f"nobody-{n}@example.com", "leaked 1"), 401, "invalid-credentials"
            )
        assert_problem(await login(stuffer, tenant.slug, victim), 429, "login-locked")
    async with client_at(inopsio_app, kernel, fresh_address()) as holder:
        assert (await login(holder, tenant.slug, victim)).status_code == 200


def test_a_source_is_an_ipv4_address_or_an_ipv6_64_network() -> None:
    assert source_of("203.0.113.7") == "203.0.113.7"
    assert source_of("::ffff:203.0.113.7") == "203.0.113.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("") == "unknown"


# -- names, and other tenants' members ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Ada\nLovelace",
        "Acme\r\nBcc: x@example.com",
        "tab\there",
        "nul\u0000",
        "bell\u0007",
        "sep\u2028x",
        "\u202egnp.exe",
    ],
)
async def test_line_breaks_and_control_characters_in_names_are_refused_with_422_at_the_field(
    name: str,
    client: Any,
    kernel: Any,
    make_tenant: Any,
    sign_in: Any,
    operator_headers: dict[str, str],
    smtp_sink: Any,
    run_jobs: Any,
) -> None:
    def assert_at(response: httpx.Response, pointer: str) -> None:
        body = assert_problem(response, 422, "invalid-name")
        assert body["errors"][0]["pointer"] == pointer, body

    signup = {
        "email": f"n-{secrets.token_hex(4)}@example.com",
        "password": PASSWORD,
        "tenant_slug": f"n-{secrets.token_hex(4)}",
    }
    assert_at(await client.post("/api/v1/auth/signup", json={**signup, "name": name, "tenant_name": "Fine"}), "/name")
    assert_at(
        await client.post("/api/v1/auth/signup", json={**signup, "name": "Fine", "tenant_name": name}), "/tenant_name"
    )
    await run_jobs()
    assert smtp_sink.to(signup["email"]) == []

    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    assert_at(
        await client.patch("/api/v1/tenant/settings", json={"display_name": name}, headers=owner), "/display_name"
    )
    assert (await kernel.tenants.get(tenant.id)).settings.display_name is None

    invited = f"i-{secrets.token_hex(4)}@example.com"
    assert (
        await client.post("/api/v1/invitations", json={"email": invited, "role": "member"}, headers=owner)
    ).status_code == 201
    await run_jobs()
    [message] = smtp_sink.to(invited)
    token = re.search(r"/accept-invitation\?token=([\w-]+)", message.get_body(("plain",)).get_content())
    assert token
    accept = {"token": token.group(1), "password": PASSWORD}
    assert_at(
        await client.post(
            "/api/v1/auth/invitations/accept", json={**accept, "name": name}, headers={"X-Tenant": tenant.slug}
        ),
        "/name",
    )
    assert await kernel.identity.accounts.user_by_email(invited) is None

    slug = f"op-{secrets.token_hex(4)}"
    platform = "/api/v1/platform/tenants"
    assert_at(await client.post(platform, json={"slug": slug, "name": name}, headers=operator_headers), "/name")
    assert_at(
        await client.post(
            platform, json={"slug": slug, "name": "Fine", "settings": {"display_name": name}}, headers=operator_headers
        ),
        "/settings/display_name",
    )
    assert await kernel.tenants.directory.get(slug) is None
    assert_at(
        await client.patch(f"{platform}/{tenant.id}/settings", json={"display_name": name}, headers=operator_headers),
        "/display_name",
    )


async def test_names_with_joiners_accents_and_right_to_left_scripts_are_kept(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    for name in ("Zoë 👩\u200d💻 e\u0301", "مهرداد\u200cی", "Åsa O'Brien-Łukasz"):
        changed = await client.patch("/api/v1/tenant/settings", json={"display_name": name}, headers=owner)
        assert changed.status_code == 200, changed.text
        assert changed.json()["display_name"] == name


async def test_revoking_sessions_of_a_user_who_is_not_a_member_here_is_404_like_an_unknown_id(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    here, elsewhere = await make_tenant(), await make_tenant()
    admin = await sign_in(here, "admin")
    outsider_email = await new_member(kernel, elsewhere)
    outsider = await kernel.identity.accounts.user_by_email(outsider_email)
    await login(client, elsewhere.slug, outsider_email)

    for user_id in (outsider.id, uuid.uuid4()):
        response = await client.post(f"/api/v1/members/{user_id}/revoke-sessions", headers=admin)
        assert_problem(response, 404, "not-found")
    assert [s.revoked_at for s in await sessions_of(kernel, elsewhere, outsider_email)] == [None]
    assert "auth.session.revoked" not in await audit_actions(kernel, here)

    member = await sign_in(here, "member")
    member_id = (await client.get("/api/v1/me", headers=member)).json()["user_id"]
    revoked = await client.post(f"/api/v1/members/{member_id}/revoke-sessions", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json() == {"revoked": 1}
    assert (await client.get("/api/v1/me", headers=member)).status_code == 401
