"""TOTP two-factor authentication: RFC 6238 vectors, enrolment, sign-in with codes and recovery codes,
replay and brute-force protection, turning it off, and the per-tenant "2FA required" setting."""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy import select

from inopsio.errors import Problem
from inopsio.identity.models import AuditEntry, AuthSession, RecoveryCode, User
from inopsio.identity.services import ClientInfo
from inopsio.identity.totp import matching_step, totp_for

PASSWORD = "correct horse battery staple 42"
_addresses = itertools.count(1)

RFC6238_SHA1_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("at", "code"), RFC6238_SHA1_VECTORS)
def test_rfc6238_sha1_test_vectors_are_accepted_at_their_time_step_only_once(at: int, code: str) -> None:
    totp = totp_for(base64.b32encode(b"12345678901234567890").decode(), digits=8)
    step = at // 30
    assert matching_step(totp, code, at=at, window=0) == step
    assert matching_step(totp, code, at=at) == step
    # One step of clock drift either way is tolerated, two are not.
    assert matching_step(totp, code, at=at + 30) == step
    assert matching_step(totp, code, at=at - 30) == step
    assert matching_step(totp, code, at=at + 60) is None
    # A step at or before the last accepted one is never accepted again.
    assert matching_step(totp, code, at=at, after_step=step) is None
    assert matching_step(totp, code, at=at, after_step=step - 1) == step
    assert matching_step(totp, "00000000" if code != "00000000" else "11111111", at=at, window=0) is None
    assert matching_step(totp, code[:6], at=at) is None


class Clock:
    """The TOTP service's clock, pinned to the start of a step plus a few seconds."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 5)

    def __call__(self) -> float:
        return self.now

    def advance(self, steps: int = 1) -> None:
        self.now += 30 * steps


@pytest.fixture
def clock(kernel: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned = Clock()
    monkeypatch.setattr(kernel.identity.totp, "clock", pinned)
    return pinned


@pytest_asyncio.fixture
async def web(inopsio_app: Any, kernel: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client from an address of its own, so the per-address sign-in throttle sees only this test."""
    n = next(_addresses)
    address = f"198.51.{100 + n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=inopsio_app, client=(address, 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{kernel.settings.base_domain}") as client:
        yield client


class Account:
    def __init__(self, tenant: Any, email: str) -> None:
        self.tenant = tenant
        self.email = email
        self.headers: dict[str, str] = {}
        self.refresh_token = ""


async def new_member(kernel: Any, tenant: Any, role: str = "owner") -> Account:
    email = f"{role}-{secrets.token_hex(5)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, role, verified=True)
    return Account(tenant, email)


async def login(client: httpx.AsyncClient, account: Account, password: str = PASSWORD, **extra: str) -> httpx.Response:
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": password, **extra},
        headers={"X-Tenant": account.tenant.slug},
    )
    if response.status_code == 200:
        account.headers = {
            "X-Tenant": account.tenant.slug,
            "Authorization": f"Bearer {response.json()['access_token']}",
        }
        account.refresh_token = response.json()["refresh_token"]
    return response


async def enrol(client: httpx.AsyncClient, account: Account, clock: Clock) -> tuple[str, list[str]]:
    """Turn 2FA on; returns the secret and the recovery codes. The clock moves past the used step."""
    started = await client.post("/api/v1/me/totp", headers=account.headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = await client.post(
        "/api/v1/me/totp/confirm", json={"code": totp_for(secret).at(clock.now)}, headers=account.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.advance()
    return secret, confirmed.json()["recovery_codes"]


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix("urn:inopsio:problem:")


async def audit_actions(kernel: Any, tenant: Any) -> list[str]:
    async with kernel.db.session(tenant.id) as session:
        return list((await session.execute(select(AuditEntry.action).order_by(AuditEntry.occurred_at))).scalars())


async def stored_user(kernel: Any, email: str) -> User:
    async with kernel.db.session(None) as session:
        user: User = (await session.execute(select(User).where(User.email == email))).scalar_one()
        return user


async def test_enrolment_gives_an_otpauth_uri_and_svg_qr_code_and_stores_the_secret_encrypted(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    assert (await login(web, account)).status_code == 200

    started = await web.post("/api/v1/me/totp", headers=account.headers)

    assert started.status_code == 200, started.text
    body = started.json()
    secret = body["secret"]
    assert body["otpauth_uri"].startswith("otpauth://totp/Inopsio:")
    assert "issuer=Inopsio" in body["otpauth_uri"]
    assert f"secret={secret}" in body["otpauth_uri"]
    assert tenant.slug in body["otpauth_uri"]
    assert body["qr_svg"].startswith("data:image/svg+xml")
    assert "svg" in body["qr_svg"]
    user = await stored_user(kernel, account.email)
    assert user.totp_secret is not None
    assert user.totp_secret != secret
    assert secret not in user.totp_secret
    assert kernel.identity.box.decrypt(user.totp_secret) == secret
    assert user.totp_enabled_at is None
    # Not on until confirmed: signing in still needs no code.
    assert (await login(web, account)).status_code == 200
    me = await web.get("/api/v1/me", headers=account.headers)
    assert me.json()["totp_enabled"] is False


async def test_confirming_needs_a_valid_code_and_returns_ten_single_use_recovery_codes(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    not_started = await web.post("/api/v1/me/totp/confirm", json={"code": "123456"}, headers=account.headers)
    assert not_started.status_code == 409
    assert problem_code(not_started) == "totp-not-started"
    secret = (await web.post("/api/v1/me/totp", headers=account.headers)).json()["secret"]

    wrong = await web.post(
        "/api/v1/me/totp/confirm",
        json={"code": totp_for(secret).at(clock.now + 120)},
        headers=account.headers,
    )
    assert wrong.status_code == 422
    assert problem_code(wrong) == "invalid-totp"
    malformed = await web.post("/api/v1/me/totp/confirm", json={"code": 123456}, headers=account.headers)
    assert malformed.status_code == 400
    confirmed = await web.post(
        "/api/v1/me/totp/confirm", json={"code": totp_for(secret).at(clock.now)}, headers=account.headers
    )

    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    async with kernel.db.session(None) as session:
        user = (await session.execute(select(User).where(User.email == account.email))).scalar_one()
        hashes = set(
            (await session.execute(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id))).scalars()
        )
    assert len(hashes) == 10
    assert not hashes & set(codes)
    assert not hashes & {c.replace("-", "") for c in codes}
    assert user.totp_enabled_at is not None
    assert (await web.get("/api/v1/me", headers=account.headers)).json()["totp_enabled"] is True
    assert "auth.totp.enabled" in await audit_actions(kernel, tenant)
    again = await web.post("/api/v1/me/totp", headers=account.headers)
    assert again.status_code == 409
    assert problem_code(again) == "totp-already-enabled"


async def test_sign_in_with_2fa_needs_a_code_that_works_once_and_recovery_codes_that_work_once(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    secret, recovery = await enrol(web, account, clock)
    totp = totp_for(secret)

    without = await login(web, account)
    assert without.status_code == 401
    assert problem_code(without) == "totp-required"
    assert without.json()["second_factor"] == "totp"
    wrong_password = await login(web, account, password="not the password", totp_code=totp.at(clock.now))
    assert problem_code(wrong_password) == "invalid-credentials"

    code = totp.at(clock.now)
    assert (await login(web, account, totp_code=code)).status_code == 200
    replayed = await login(web, account, totp_code=code)
    assert replayed.status_code == 401
    assert problem_code(replayed) == "invalid-totp"
    # The previous step's code is still inside the drift window, but older than the one accepted.
    older = await login(web, account, totp_code=totp.at(clock.now - 30))
    assert problem_code(older) == "invalid-totp"
    spaced = totp.at(clock.now + 30)
    assert (await login(web, account, totp_code=f"{spaced[:3]} {spaced[3:]}")).status_code == 200

    assert (await login(web, account, recovery_code=recovery[0].upper())).status_code == 200
    spent = await login(web, account, recovery_code=recovery[0])
    assert spent.status_code == 401
    assert problem_code(spent) == "invalid-recovery-code"
    assert (await login(web, account, recovery_code=recovery[1])).status_code == 200
    me = await web.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200
    actions = await audit_actions(kernel, tenant)
    assert actions.count("auth.recovery_code.used") == 2
    assert "auth.signin.failed" in actions


async def test_two_concurrent_sign_ins_with_one_code_cannot_both_succeed(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    secret, _ = await enrol(web, account, clock)
    code = totp_for(secret).at(clock.now)

    results = await asyncio.gather(*(login(web, account, totp_code=code) for _ in range(4)))

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 401, 401, 401]


async def test_wrong_codes_count_as_failed_sign_ins_toward_the_lockout(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel.identity.accounts.throttle, "max_failures", 3)
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    secret, _ = await enrol(web, account, clock)
    totp = totp_for(secret)
    wrong = totp.at(clock.now + 600)

    first = await login(web, account, totp_code=wrong)
    second = await login(web, account, recovery_code="aaaaa-bbbbb")
    third = await login(web, account, totp_code=wrong)
    locked = await login(web, account, totp_code=totp.at(clock.now))

    assert [first.status_code, second.status_code, third.status_code] == [401, 401, 401]
    assert locked.status_code == 429
    assert problem_code(locked) == "login-locked"
    assert int(locked.headers["Retry-After"]) > 0


async def test_2fa_is_turned_off_with_a_code_or_the_password_and_its_recovery_codes_go(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    await enrol(web, account, clock)

    neither = await web.request("DELETE", "/api/v1/me/totp", json={}, headers=account.headers)
    assert neither.status_code == 422
    both = await web.request(
        "DELETE", "/api/v1/me/totp", json={"code": "123456", "password": PASSWORD}, headers=account.headers
    )
    assert both.status_code == 422
    wrong = await web.request("DELETE", "/api/v1/me/totp", json={"password": "nope nope"}, headers=account.headers)
    assert wrong.status_code == 422
    assert problem_code(wrong) == "wrong-password"
    off = await web.request("DELETE", "/api/v1/me/totp", json={"password": PASSWORD}, headers=account.headers)

    assert off.status_code == 204, off.text
    user = await stored_user(kernel, account.email)
    assert user.totp_secret is None
    assert user.totp_enabled_at is None
    async with kernel.db.session(None) as session:
        left = (await session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user.id))).all()
    assert left == []
    assert (await login(web, account)).status_code == 200
    assert "auth.totp.disabled" in await audit_actions(kernel, tenant)
    again = await web.request("DELETE", "/api/v1/me/totp", json={"password": PASSWORD}, headers=account.headers)
    assert problem_code(again) == "totp-not-enabled"

    secret, _ = await enrol(web, account, clock)
    stale = await web.request(
        "DELETE", "/api/v1/me/totp", json={"code": totp_for(secret).at(clock.now - 30)}, headers=account.headers
    )
    assert problem_code(stale) == "invalid-totp"
    with_code = await web.request(
        "DELETE", "/api/v1/me/totp", json={"code": totp_for(secret).at(clock.now)}, headers=account.headers
    )
    assert with_code.status_code == 204
    assert (await login(web, account)).status_code == 200


async def test_regenerated_recovery_codes_replace_the_old_ones(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    secret, old = await enrol(web, account, clock)

    refused = await web.post("/api/v1/me/totp/recovery-codes", json={"code": "000000"}, headers=account.headers)
    assert problem_code(refused) == "invalid-totp"
    renewed = await web.post(
        "/api/v1/me/totp/recovery-codes", json={"code": totp_for(secret).at(clock.now)}, headers=account.headers
    )

    assert renewed.status_code == 200, renewed.text
    new = renewed.json()["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    assert problem_code(await login(web, account, recovery_code=old[0])) == "invalid-recovery-code"
    assert (await login(web, account, recovery_code=new[0])).status_code == 200


async def test_tenant_requiring_2fa_limits_members_without_it_to_enrolment(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant(settings={"require_2fa": True})
    account = await new_member(kernel, tenant)
    assert (await login(web, account)).status_code == 200
    other_session = Account(tenant, account.email)
    await login(web, other_session)

    assert (await web.get("/api/v1/me", headers=account.headers)).status_code == 200
    for path in ("/api/v1/members", "/api/v1/me/sessions", "/api/v1/roles"):
        limited = await web.get(path, headers=account.headers)
        assert limited.status_code == 403, path
        assert problem_code(limited) == "totp-enrolment-required"
    assert (await web.post("/api/v1/auth/logout", headers=other_session.headers)).status_code == 204

    secret, _ = await enrol(web, account, clock)
    # The token in hand was issued without a second factor; a refreshed one carries it.
    assert (await web.get("/api/v1/members", headers=account.headers)).status_code == 403
    refreshed = await web.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}, headers={"X-Tenant": tenant.slug}
    )
    assert refreshed.status_code == 200, refreshed.text
    full = {"X-Tenant": tenant.slug, "Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await web.get("/api/v1/members", headers=full)).status_code == 200
    assert (await login(web, account, totp_code=totp_for(secret).at(clock.now))).status_code == 200
    assert (await web.get("/api/v1/me/sessions", headers=account.headers)).status_code == 200


async def test_tenant_not_requiring_2fa_lets_members_without_it_in(
    web: httpx.AsyncClient, kernel: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    await login(web, account)
    assert (await web.get("/api/v1/members", headers=account.headers)).status_code == 200


# -- turning 2FA on ends the sessions opened with the password alone --------------------------------


async def test_turning_2fa_on_ends_every_other_session_in_every_tenant_keeps_this_one_and_audits_it(
    web: httpx.AsyncClient, inopsio_app: Any, kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant, other_tenant = await make_tenant(), await make_tenant()
    account = await new_member(kernel, tenant)
    await kernel.identity.accounts.create_member(other_tenant, account.email, PASSWORD, "member")
    elsewhere, there = Account(tenant, account.email), Account(other_tenant, account.email)
    for signed_in in (account, elsewhere, there):
        assert (await login(web, signed_in)).status_code == 200
    transport = httpx.ASGITransport(app=inopsio_app, client=("198.51.99.7", 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{kernel.settings.base_domain}") as browser:
        opened = await browser.post(
            "/api/v1/auth/web-login",
            json={"email": account.email, "password": PASSWORD},
            headers={"X-Tenant": tenant.slug},
        )
        assert opened.status_code == 200, opened.text
        assert (await browser.get("/api/v1/me", headers={"X-Tenant": tenant.slug})).status_code == 200

        await enrol(web, account, clock)

        # The browser's session, the other API sessions here and in the other tenant: all ended.
        assert problem_code(await browser.get("/api/v1/me", headers={"X-Tenant": tenant.slug})) == "session-ended"
    for ended in (elsewhere, there):
        assert problem_code(await web.get("/api/v1/me", headers=ended.headers)) == "session-ended"
        refreshed = await web.post(
            "/api/v1/auth/refresh", json={"refresh_token": ended.refresh_token}, headers={"X-Tenant": ended.tenant.slug}
        )
        assert problem_code(refreshed) == "session-ended"
    # The one that turned it on goes on, and its refreshed token carries the second factor.
    assert (await web.get("/api/v1/me", headers=account.headers)).status_code == 200
    refreshed = await web.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}, headers={"X-Tenant": tenant.slug}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})["mfa"] is True

    for where, count in ((tenant, 2), (other_tenant, 1)):
        async with kernel.db.session(where.id) as session:
            entries = (
                (await session.execute(select(AuditEntry).where(AuditEntry.action == "auth.session.revoked")))
                .scalars()
                .all()
            )
        assert [(e.details["count"], e.details["reason"], e.actor_label) for e in entries] == [
            (count, "two-factor enabled", account.email)
        ]


async def test_a_sign_in_whose_password_was_checked_while_2fa_was_turned_on_opens_no_session(
    kernel: Any, make_tenant: Any, clock: Clock
) -> None:
    tenant = await make_tenant()
    account = await new_member(kernel, tenant)
    totp = kernel.identity.totp

    async def owner_turns_2fa_on_meanwhile(user: User) -> None:
        # Runs after the password was checked and before the session opens: the narrowest race.
        enrolment = await totp.start(tenant, user.id)
        await totp.confirm(tenant, user.id, totp_for(enrolment.secret).at(clock.now), ClientInfo(), keep_session=None)

    with pytest.raises(Problem) as refused:
        await kernel.identity.accounts.login(
            tenant, account.email, PASSWORD, ClientInfo(ip="198.51.99.8"), second_factor=owner_turns_2fa_on_meanwhile
        )
    assert refused.value.status_code == 401
    assert refused.value.code == "totp-required"
    user = await stored_user(kernel, account.email)
    async with kernel.db.session(tenant.id) as session:
        opened = (await session.execute(select(AuthSession).where(AuthSession.user_id == user.id))).scalars().all()
    assert opened == []
