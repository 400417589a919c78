"""OIDC sign-in end to end against a real local provider (oidc-provider-mock), and the SSRF guard."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from oidc_provider_mock import run_server_in_thread
from sqlalchemy import select

from inopsio.identity.models import AuditEntry, OidcProvider
from inopsio.identity.oidc import PendingSignIn, RoleMapping, choose_role
from inopsio.net import UnsafeUrlError, check_public_url
from inopsio.settings import Settings

SECRET = "provider client secret " + "x" * 16


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    """A real OpenID provider on a free port, in a thread, for this module."""
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def provider_config(issuer: str, **changes: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "client_id": f"inopsio-{secrets.token_hex(3)}",
        "client_secret": SECRET,
        "role_mapping": {"claim": "groups", "map": {"sales-managers": "manager", "it": "admin"}},
        **changes,
    }


async def configure(client: Any, headers: dict[str, str], issuer: str, name: str = "corp", **changes: Any) -> Any:
    response = await client.put(
        f"/api/v1/oidc/providers/{name}", json=provider_config(issuer, **changes), headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def start(client: Any, slug: str, name: str = "corp") -> str:
    response = await client.get(f"/api/v1/auth/oidc/{name}/start", headers={"X-Tenant": slug})
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


async def authorize_at_provider(authorization_url: str, provider_url: str, sub: str, claims: dict[str, Any]) -> str:
    """Play the user at the provider: set the account's claims, submit the form, return our callback URL."""
    async with httpx.AsyncClient(timeout=10) as idp:
        assert (await idp.put(f"{provider_url}/users/{sub}", json=claims)).status_code == 204
        form = await idp.get(authorization_url)
        assert form.status_code == 200
        assert 'name="sub"' in form.text
        answer = await idp.post(authorization_url, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


async def sign_in_through_provider(
    client: Any, provider_url: str, slug: str, sub: str, claims: dict[str, Any], name: str = "corp"
) -> Any:
    callback = await authorize_at_provider(await start(client, slug, name), provider_url, sub, claims)
    return await client.get(callback)


def user_claims(email: str, groups: list[str] | None = None, verified: bool = True) -> dict[str, Any]:
    return {"email": email, "email_verified": verified, "name": "Olive Idp", "groups": groups or []}


async def me(client: Any, tokens: dict[str, Any], slug: str) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/me", headers={"X-Tenant": slug, "Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- configuration --------------------------------------------------------------------------------


async def test_owner_configures_a_provider_whose_secret_is_stored_encrypted_and_never_listed(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    saved = await configure(client, owner, provider_url)
    assert saved["issuer"] == provider_url
    assert saved["redirect_uri"] == f"http://{tenant.slug}.localhost:8000/api/v1/auth/oidc/corp/callback"
    listed = await client.get("/api/v1/oidc/providers", headers=owner)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()] == ["corp"]
    assert "client_secret" not in listed.text
    assert SECRET not in listed.text
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(OidcProvider))).scalar_one()
        audit = (await session.execute(select(AuditEntry).where(AuditEntry.action == "oidc.configured"))).scalar_one()
    assert row.client_secret != SECRET
    assert kernel.identity.box.decrypt(row.client_secret) == SECRET
    assert audit.details["provider"] == "corp"
    assert SECRET not in str(audit.details)

    # A change without a secret keeps the stored one; removal takes the provider away.
    changed = await client.put(
        "/api/v1/oidc/providers/corp",
        json={"issuer": provider_url, "client_id": "other", "enabled": False},
        headers=owner,
    )
    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(OidcProvider))).scalar_one()
    assert kernel.identity.box.decrypt(row.client_secret) == SECRET
    assert (await client.delete("/api/v1/oidc/providers/corp", headers=owner)).status_code == 204
    assert (await client.get("/api/v1/oidc/providers", headers=owner)).json() == []
    assert (await client.delete("/api/v1/oidc/providers/corp", headers=owner)).status_code == 404


@pytest.mark.parametrize(
    ("issuer_suffix", "problem"),
    [
        ("/not-an-issuer", "issuer-not-oidc"),
        ("unreachable", "issuer-unreachable"),
        ("ftp", "invalid-issuer"),
    ],
)
async def test_issuer_that_is_unreachable_or_not_oidc_is_refused_with_a_clear_problem(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str, issuer_suffix: str, problem: str
) -> None:
    issuer = {
        "unreachable": "http://127.0.0.1:9",
        "ftp": "ftp://idp.example.com",
    }.get(issuer_suffix, provider_url + issuer_suffix)
    owner = await sign_in(await make_tenant(), "owner")
    response = await client.put("/api/v1/oidc/providers/corp", json=provider_config(issuer), headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith(problem)
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_provider_configuration_needs_settings_permission_and_owner_only_maps_to_owner(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    member = await sign_in(tenant, "member")
    admin = await sign_in(tenant, "admin")
    refused = await client.put("/api/v1/oidc/providers/corp", json=provider_config(provider_url), headers=member)
    assert refused.status_code == 403
    assert (await client.get("/api/v1/oidc/providers", headers=member)).status_code == 403
    to_owner = provider_config(provider_url, role_mapping={"claim": "groups", "map": {"boss": "owner"}})
    assert (await client.put("/api/v1/oidc/providers/corp", json=to_owner, headers=admin)).status_code == 403
    default_owner = provider_config(provider_url, role_mapping={"default_role": "owner"})
    response = await client.put("/api/v1/oidc/providers/corp", json=default_owner, headers=admin)
    assert response.status_code == 422
    assert response.json()["type"].endswith("invalid-role-mapping")
    unknown = provider_config(provider_url, role_mapping={"map": {"x": "no-such-role"}})
    response = await client.put("/api/v1/oidc/providers/corp", json=unknown, headers=admin)
    assert response.status_code == 422
    assert response.json()["type"].endswith("unknown-role")
    assert (
        await client.put("/api/v1/oidc/providers/Bad Name", json=provider_config(provider_url), headers=admin)
    ).status_code == 422


# -- sign-in --------------------------------------------------------------------------------------


async def test_start_redirects_to_the_provider_with_state_nonce_and_pkce(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    location = urlsplit(await start(client, tenant.slug))
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}" == provider_url
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32
    assert len(query["nonce"]) >= 32
    assert len(query["code_challenge"]) == 43
    assert query["redirect_uri"].endswith("/api/v1/auth/oidc/corp/callback")
    assert "openid" in query["scope"].split()


async def test_first_sign_in_creates_a_member_with_the_mapped_role_and_the_next_reaches_the_same_user(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    sub, email = f"olive-{secrets.token_hex(4)}", f"olive-{secrets.token_hex(4)}@corp.example"
    first = await sign_in_through_provider(
        client, provider_url, tenant.slug, sub, user_claims(email, ["staff", "sales-managers"])
    )
    assert first.status_code == 200, first.text
    profile = await me(client, first.json(), tenant.slug)
    assert profile["email"] == email
    assert profile["role"] == "manager"
    assert profile["email_verified"]

    # Same subject, new e-mail and groups at the provider: still the same user, role unchanged.
    again = await sign_in_through_provider(client, provider_url, tenant.slug, sub, user_claims(f"new-{email}", ["it"]))
    assert again.status_code == 200, again.text
    second = await me(client, again.json(), tenant.slug)
    assert second["user_id"] == profile["user_id"]
    assert second["role"] == "manager"
    async with kernel.db.session(tenant.id) as session:
        entries = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "auth.signin.succeeded"))
        ).scalars()
        oidc_entries = [e for e in entries if e.details.get("method") == "oidc"]
    assert len(oidc_entries) == 2


async def test_unmapped_user_gets_the_default_role_or_member(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(
        client,
        await sign_in(tenant, "owner"),
        provider_url,
        role_mapping={"claim": "groups", "map": {"it": "admin"}, "default_role": "viewer"},
    )
    sub = f"v-{secrets.token_hex(4)}"
    response = await sign_in_through_provider(
        client, provider_url, tenant.slug, sub, user_claims(f"{sub}@corp.example", ["elsewhere"])
    )
    assert response.status_code == 200, response.text
    assert (await me(client, response.json(), tenant.slug))["role"] == "viewer"


async def test_existing_password_account_with_the_same_verified_email_is_linked(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    email = f"pat-{secrets.token_hex(4)}@corp.example"
    password_headers = await sign_in(tenant, "viewer", email=email)
    before = await client.get("/api/v1/me", headers=password_headers)
    response = await sign_in_through_provider(
        client, provider_url, tenant.slug, f"pat-{secrets.token_hex(4)}", user_claims(email.upper(), ["it"])
    )
    assert response.status_code == 200, response.text
    after = await me(client, response.json(), tenant.slug)
    assert after["user_id"] == before.json()["user_id"]
    assert after["role"] == "viewer"  # an existing member keeps their role


async def test_unverified_email_of_an_existing_account_is_not_linked(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    email = f"uv-{secrets.token_hex(4)}@corp.example"
    await sign_in(tenant, "member", email=email)
    response = await sign_in_through_provider(
        client, provider_url, tenant.slug, f"uv-{secrets.token_hex(4)}", user_claims(email, verified=False)
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"].endswith("oidc-email-unverified")


async def test_replayed_state_is_refused(client: Any, make_tenant: Any, sign_in: Any, provider_url: str) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    sub = f"r-{secrets.token_hex(4)}"
    callback = await authorize_at_provider(
        await start(client, tenant.slug), provider_url, sub, user_claims(f"{sub}@corp.example")
    )
    assert (await client.get(callback)).status_code == 200
    replay = await client.get(callback)
    assert replay.status_code == 400
    assert replay.json()["type"].endswith("invalid-state")
    missing = await client.get("/api/v1/auth/oidc/corp/callback?code=abc", headers={"X-Tenant": tenant.slug})
    assert missing.status_code == 400
    assert missing.json()["type"].endswith("invalid-state")


async def test_state_started_on_tenant_a_is_refused_on_tenant_b(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    a, b = await make_tenant(), await make_tenant()
    await configure(client, await sign_in(a, "owner"), provider_url)
    await configure(client, await sign_in(b, "owner"), provider_url)
    sub = f"x-{secrets.token_hex(4)}"
    callback = urlsplit(
        await authorize_at_provider(await start(client, a.slug), provider_url, sub, user_claims(f"{sub}@corp.example"))
    )
    on_b = await client.get(f"{callback.path}?{callback.query}", headers={"X-Tenant": b.slug})
    assert on_b.status_code == 400
    assert on_b.json()["type"].endswith("invalid-state")


async def test_disabled_provider_cannot_start_nor_finish_a_sign_in(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    await configure(client, owner, provider_url)
    sub = f"d-{secrets.token_hex(4)}"
    callback = await authorize_at_provider(
        await start(client, tenant.slug), provider_url, sub, user_claims(f"{sub}@corp.example")
    )
    await configure(client, owner, provider_url, enabled=False)
    assert (await client.get(callback)).status_code == 404
    refused = await client.get("/api/v1/auth/oidc/corp/start", headers={"X-Tenant": tenant.slug})
    assert refused.status_code == 404
    assert refused.json()["type"].endswith("oidc-provider-not-found")
    unknown = await client.get("/api/v1/auth/oidc/nobody/start", headers={"X-Tenant": tenant.slug})
    assert unknown.status_code == 404


async def test_id_token_with_a_foreign_nonce_is_refused(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    location = await start(client, tenant.slug)
    # Someone who could swap the nonce (or replay another sign-in's ID token) must fail validation.
    service_key = [k async for k in kernel.redis.scan_iter(f"{kernel.settings.redis_namespace}:oidc:state:*")]
    for key in service_key:
        pending = msgspec.json.decode(await kernel.redis.get(key), type=PendingSignIn)
        if pending.tenant_id == str(tenant.id):
            pending.nonce = "not-the-nonce-sent"
            await kernel.redis.set(key, msgspec.json.encode(pending), ex=600)
    sub = f"n-{secrets.token_hex(4)}"
    callback = await authorize_at_provider(location, provider_url, sub, user_claims(f"{sub}@corp.example"))
    response = await client.get(callback)
    assert response.status_code == 401
    assert response.json()["type"].endswith("invalid-id-token")


async def test_provider_error_answer_is_a_clear_problem(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    state = parse_qs(urlsplit(await start(client, tenant.slug)).query)["state"][0]
    response = await client.get(
        f"/api/v1/auth/oidc/corp/callback?error=access_denied&state={state}", headers={"X-Tenant": tenant.slug}
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("oidc-denied")


def test_owner_role_is_given_only_by_an_explicit_mapping() -> None:
    roles = {"owner", "admin", "manager", "member", "viewer", "auditor"}
    mapping = RoleMapping(claim="groups", map={"a": "manager", "b": "admin", "c": "auditor"}, default_role="owner")
    assert choose_role(mapping, {"groups": ["a", "b"]}, roles) == "admin"
    assert choose_role(mapping, {"groups": "c"}, roles) == "auditor"
    assert choose_role(mapping, {"groups": ["zzz"]}, roles) == "member"
    assert choose_role(RoleMapping(map={"boss": "owner"}), {"groups": ["boss"]}, roles) == "owner"
    assert choose_role(RoleMapping(map={"x": "gone"}, default_role="viewer"), {"groups": ["x"]}, roles) == "viewer"


# -- outgoing requests ----------------------------------------------------------------------------


def production_settings() -> Settings:
    return Settings(environment="production", secret_key="s" * 40)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "https://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.0.10:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://localhost/",
    ],
)
async def test_production_refuses_private_loopback_and_link_local_targets(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        await check_public_url(url, production_settings())


async def test_production_allows_public_addresses_and_refuses_other_schemes() -> None:
    await check_public_url("https://93.184.215.14/.well-known/openid-configuration", production_settings())
    for bad in ("ftp://93.184.215.14/", "file:///etc/passwd", "https://user:pw@93.184.215.14/", "https:///x"):
        with pytest.raises(UnsafeUrlError):
            await check_public_url(bad, production_settings())


async def test_development_and_test_installations_may_call_local_servers() -> None:
    for environment in ("development", "test"):
        await check_public_url("http://127.0.0.1:8080/", Settings(environment=environment))  # type: ignore[arg-type]
