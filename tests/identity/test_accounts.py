"""Sign-up, sign-in, refresh-token rotation, sessions, /api/v1/me and roles, through the API."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

PASSWORD = "correct horse battery staple 42"


async def signup(client: Any, email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
    slug = f"acme-{secrets.token_hex(4)}"
    email = email or f"owner-{secrets.token_hex(4)}@example.com"
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": password, "name": "Ada Owner", "tenant_slug": slug, "tenant_name": "Acme"},
    )
    assert response.status_code == 201, response.text
    return {"slug": slug, "email": email, **response.json()}


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


async def test_signup_creates_tenant_whose_owner_can_sign_in_and_see_all_permissions(client: Any) -> None:
    account = await signup(client)
    tokens = await login(client, account["slug"], account["email"])
    me = await client.get("/api/v1/me", headers=bearer(tokens, account["slug"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["role"] == "owner"
    assert body["email"] == account["email"]
    assert {"kernel.members.write", "sample.notes.read"} <= set(body["permissions"])
    assert [t["slug"] for t in body["tenants"]] == [account["slug"]]


async def test_token_tenant_claim_resolves_the_tenant_without_host_or_header(client: Any) -> None:
    account = await signup(client)
    tokens = await login(client, account["slug"], account["email"])
    me = await client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["tenant"]["slug"] == account["slug"]


async def test_token_of_tenant_a_on_tenant_b_is_refused(client: Any) -> None:
    a, b = await signup(client), await signup(client)
    tokens = await login(client, a["slug"], a["email"])
    response = await client.get("/api/v1/me", headers=bearer(tokens, b["slug"]))
    assert response.status_code == 403
    assert response.json()["type"].endswith("tenant-mismatch")


async def test_wrong_password_and_unknown_email_get_the_same_answer(client: Any) -> None:
    account = await signup(client)
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


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client: Any) -> None:
    account = await signup(client)
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


async def test_changing_the_password_ends_other_sessions_but_not_this_one(client: Any) -> None:
    account = await signup(client)
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


async def test_custom_role_grants_exactly_its_permissions(client: Any, kernel: Any) -> None:
    account = await signup(client)
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


async def test_unauthenticated_requests_to_member_routes_get_401(client: Any) -> None:
    account = await signup(client)
    response = await client.get("/api/v1/sample/notes/", headers={"X-Tenant": account["slug"]})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
