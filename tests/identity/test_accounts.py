"""Sign-up, sign-in, refresh-token rotation, sessions, /api/v1/me and roles, through the API."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

PASSWORD = "correct horse battery staple 42"


def confirm_link_token(message: Any) -> str:
    body = message.get_body(("plain",)).get_content()
    found = re.search(r"/signup/confirm\?token=([A-Za-z0-9_\-]+)", body)
    assert found, body
    return found.group(1)


@pytest.fixture
def signup(client: Any, smtp_sink: Any, run_jobs: Any) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await signup()``: a workspace and its owner, through the sign-up API and the mailed link."""

    async def sign_up(email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
        slug = f"acme-{secrets.token_hex(4)}"
        email = email or f"owner-{secrets.token_hex(4)}@example.com"
        body = {"email": email, "password": password, "name": "Ada Owner", "tenant_slug": slug, "tenant_name": "Acme"}
        response = await client.post("/api/v1/auth/signup", json=body)
        assert response.status_code == 202, response.text
        await run_jobs()
        [message] = smtp_sink.to(email)
        confirmed = await client.post("/api/v1/auth/signup/confirm", json={"token": confirm_link_token(message)})
        assert confirmed.status_code == 201, confirmed.text
        return {"slug": slug, "email": email, **confirmed.json()}

    return sign_up


async def login(client: Any, slug: str, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": slug}
    )
    assert response.status_code == 200, response.text
    return response.json()


def bearer(tokens: dict[str, Any], slug: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    if slug:
        headers["X-Tenant"] = slug
    return headers


async def test_signup_creates_tenant_whose_owner_can_sign_in_and_see_all_permissions(client: Any, signup: Any) -> None:
    account = await signup()
    tokens = await login(client, account["slug"], account["email"])
    me = await client.get("/api/v1/me", headers=bearer(tokens, account["slug"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["role"] == "owner"
    assert body["email"] == account["email"]
    assert {"kernel.members.write", "sample.notes.read"} <= set(body["permissions"])
    assert [t["slug"] for t in body["tenants"]] == [account["slug"]]


async def test_token_tenant_claim_resolves_the_tenant_without_host_or_header(client: Any, signup: Any) -> None:
    account = await signup()
    tokens = await login(client, account["slug"], account["email"])
    me = await client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["tenant"]["slug"] == account["slug"]


async def test_token_of_tenant_a_on_tenant_b_is_refused(client: Any, signup: Any) -> None:
    a, b = await signup(), await signup()
    tokens = await login(client, a["slug"], a["email"])
    response = await client.get("/api/v1/me", headers=bearer(tokens, b["slug"]))
    assert response.status_code == 403
    assert response.json()["type"].endswith("tenant-mismatch")


async def test_wrong_password_and_unknown_email_get_the_same_answer(client: Any, signup: Any) -> None:
    account = await signup()
    wrong = await client.post(
        "/api/v1/auth/login",
        json={"email": account["email"], "password": "nope nope nope"},
        headers={"X-Tenant": account["slug"]},
    )
    unknown = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "nope nope"},
        headers={"X-Tenant": account["slug"]},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client: Any, signup: Any) -> None:
    account = await signup()
    first = await login(client, account["slug"], account["email"])
    headers = {"X-Tenant": account["slug"]}
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers=headers)
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers=headers)
    assert reused.status_code == 401
    assert reused.json()["type"].endswith("refresh-token-reused")
    # The legitimate holder's newer token and its access token are dead too.
    newer = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}, headers=headers
    )
    assert newer.status_code == 401
    me = await client.get("/api/v1/me", headers=bearer(second.json(), account["slug"]))
    assert me.status_code == 401


async def test_changing_the_password_ends_other_sessions_but_not_this_one(client: Any, signup: Any) -> None:
    account = await signup()
    slug = account["slug"]
    here, elsewhere = await login(client, slug, account["email"]), await login(client, slug, account["email"])
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "an entirely new passphrase 77"},
        headers=bearer(here, slug),
    )
    assert changed.status_code == 204, changed.text
    assert (await client.get("/api/v1/me", headers=bearer(here, slug))).status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(elsewhere, slug))).status_code == 401
    await login(client, slug, account["email"], "an entirely new passphrase 77")


@pytest.mark.parametrize("password", ["short", "password123", "qwertyuiop", "acmeacmeacme"])
async def test_weak_passwords_are_refused_at_signup(client: Any, password: str) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={
            "email": f"x{secrets.token_hex(3)}@example.com",
            "password": password,
            "tenant_slug": f"w-{secrets.token_hex(4)}",
            "tenant_name": "Acme",
        },
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("weak-password")


async def test_custom_role_grants_exactly_its_permissions(client: Any, kernel: Any, signup: Any) -> None:
    account = await signup()
    slug = account["slug"]
    owner = bearer(await login(client, slug, account["email"]), slug)
    created = await client.post(
        "/api/v1/roles", json={"name": "note-reader", "permissions": ["sample.notes.read"]}, headers=owner
    )
    assert created.status_code == 201, created.text
    assert created.json()["permissions"] == ["sample.notes.read"]
    roles = {r["name"]: r for r in (await client.get("/api/v1/roles", headers=owner)).json()}
    assert roles["note-reader"]["builtin"] is False
    assert "sample.notes.write" in roles["member"]["permissions"]
    unknown = await client.post("/api/v1/roles", json={"name": "x-role", "permissions": ["nope.x.y"]}, headers=owner)
    assert unknown.status_code == 422


async def test_unauthenticated_requests_to_member_routes_get_401(client: Any, signup: Any) -> None:
    account = await signup()
    response = await client.get("/api/v1/sample/notes/", headers={"X-Tenant": account["slug"]})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


# -- sign-up tells nobody which addresses have an account ------------------------------------------


class CountingHasher:
    """Wraps the argon2 hasher and counts its computations (a hash or a verification)."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.computations = 0

    def hash(self, password: str) -> str:
        self.computations += 1
        return str(self.hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        self.computations += 1
        return bool(self.hasher.verify(password_hash, password))

    def check_needs_rehash(self, password_hash: str) -> bool:
        return bool(self.hasher.check_needs_rehash(password_hash))


async def test_signup_with_an_existing_address_answers_exactly_as_a_new_one_and_mails_its_holder_a_notice(
    client: Any, kernel: Any, signup: Any, smtp_sink: Any, run_jobs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = await signup()
    passwords = kernel.identity.accounts.passwords
    hasher = CountingHasher(passwords.hasher)
    monkeypatch.setattr(passwords, "hasher", hasher)
    fresh = f"fresh-{secrets.token_hex(4)}@example.com"
    answers, computations = {}, {}
    for email in (fresh, holder["email"]):
        before = hasher.computations
        answers[email] = await client.post(
            "/api/v1/auth/signup",
            json={
                "email": email,
                "password": "an attacker's own passphrase 93",
                "name": "Mallory",
                "tenant_slug": f"probe-{secrets.token_hex(4)}",
                "tenant_name": "Probe",
            },
        )
        computations[email] = hasher.computations - before

    new, existing = answers[fresh], answers[holder["email"]]
    assert new.status_code == existing.status_code == 202, (new.text, existing.text)
    assert new.headers["content-type"] == existing.headers["content-type"]
    new_body, existing_body = new.json(), existing.json()
    assert set(new_body) == set(existing_body) == {"email", "tenant_slug", "detail"}
    assert new_body["detail"].replace(fresh, "<email>") == existing_body["detail"].replace(holder["email"], "<email>")
    # The same argon2 work either way: hashing the new password, or checking it against the account's.
    assert computations[fresh] == computations[holder["email"]] == 1

    await run_jobs()
    [notice] = smtp_sink.to(holder["email"])[-1:]
    text = notice.get_body(("plain",)).get_content()
    assert notice["Subject"] == "Someone tried to create an account with your e-mail address"
    assert "If it was you, sign in or reset your password" in text
    assert f"{holder['slug']}.localhost:8000/login" in text
    assert f"{holder['slug']}.localhost:8000/forgot-password" in text
    assert "/signup/confirm" not in text  # the request did not know the password: no way in from this mail
    # Nothing the requester wrote reaches the holder.
    assert "Probe" not in text
    assert "Mallory" not in text
    [link] = smtp_sink.to(fresh)
    assert "/signup/confirm?token=" in link.get_body(("plain",)).get_content()
    # The holder's account is untouched: the requester's password opens nothing.
    refused = await client.post(
        "/api/v1/auth/login",
        json={"email": holder["email"], "password": "an attacker's own passphrase 93"},
        headers={"X-Tenant": holder["slug"]},
    )
    assert refused.status_code == 401
    await login(client, holder["slug"], holder["email"])


async def test_signup_creates_nothing_until_the_address_holder_follows_the_link(
    client: Any, kernel: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    slug, email = f"later-{secrets.token_hex(4)}", f"later-{secrets.token_hex(4)}@example.com"
    body = {"email": email, "password": PASSWORD, "tenant_slug": slug, "tenant_name": "Later"}
    assert (await client.post("/api/v1/auth/signup", json=body)).status_code == 202
    assert await kernel.identity.accounts.user_by_email(email) is None
    assert await kernel.tenants.directory.get(slug) is None
    # The workspace address is not held either: someone else may still take it meanwhile.
    rival = f"rival-{secrets.token_hex(4)}@example.com"
    assert (await client.post("/api/v1/auth/signup", json={**body, "email": rival})).status_code == 202

    await run_jobs()
    [message] = smtp_sink.to(email)
    created = await client.post("/api/v1/auth/signup/confirm", json={"token": confirm_link_token(message)})
    assert created.status_code == 201, created.text
    taken = await client.post(
        "/api/v1/auth/signup", json={**body, "email": f"third-{secrets.token_hex(4)}@example.com"}
    )
    assert taken.status_code == 409
    assert taken.json()["errors"] == [{"pointer": "/tenant_slug", "detail": "taken"}]
    [other] = smtp_sink.to(rival)
    late = await client.post("/api/v1/auth/signup/confirm", json={"token": confirm_link_token(other)})
    assert late.status_code == 409
    assert late.json()["type"] == "urn:inopsio:problem:slug-taken"


async def test_an_existing_identity_adds_a_workspace_through_the_link_mailed_when_it_gave_its_own_password(
    client: Any, signup: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    holder = await signup()
    slug = f"second-{secrets.token_hex(4)}"
    body = {"email": holder["email"], "password": PASSWORD, "tenant_slug": slug, "tenant_name": "Second Co"}
    assert (await client.post("/api/v1/auth/signup", json=body)).status_code == 202
    await run_jobs()
    notice = smtp_sink.to(holder["email"])[-1]
    assert "Second Co" in notice.get_body(("plain",)).get_content()

    added = await client.post("/api/v1/auth/signup/confirm", json={"token": confirm_link_token(notice)})
    assert added.status_code == 201, added.text
    assert added.json()["user_id"] == holder["user_id"]
    tokens = await login(client, slug, holder["email"])
    me = (await client.get("/api/v1/me", headers=bearer(tokens, slug))).json()
    assert me["role"] == "owner"
    assert sorted(t["slug"] for t in me["tenants"]) == sorted([holder["slug"], slug])


async def test_an_address_gets_at_most_three_signup_mails_an_hour_and_the_same_answer_beyond(
    client: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    email = f"flood-{secrets.token_hex(4)}@example.com"
    answers = []
    for n in range(5):
        body = {"email": email, "password": PASSWORD, "tenant_slug": f"f{n}-{secrets.token_hex(3)}", "tenant_name": "F"}
        answers.append(await client.post("/api/v1/auth/signup", json=body))
    assert [a.status_code for a in answers] == [202] * 5
    assert len({a.json()["detail"] for a in answers}) == 1
    await run_jobs()
    assert len(smtp_sink.to(email)) == 3
