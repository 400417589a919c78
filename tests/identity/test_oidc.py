"""OIDC sign-in end to end against a real local provider (oidc-provider-mock): configuration, the
flow, linking a provider account only with its holder's proof (mailed link or password), the role
cap of a provider at its configurer's permissions, the browser's pages, and the SSRF guard."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from oidc_provider_mock import run_server_in_thread
from sqlalchemy import select, update

from inopsio.identity.models import AuditEntry, OidcProvider, User, UserIdentity
from inopsio.identity.oidc import OidcService, PendingSignIn, RoleMapping, choose_role
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


def bearer(tokens: dict[str, Any], slug: str) -> dict[str, str]:
    return {"X-Tenant": slug, "Authorization": f"Bearer {tokens['access_token']}"}


async def me(client: Any, tokens: dict[str, Any], slug: str) -> dict[str, Any]:
    response = await client.get("/api/v1/me", headers=bearer(tokens, slug))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def me_of(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def mails_to(smtp_sink: Any, run_jobs: Any, address: str) -> list[EmailMessage]:
    await run_jobs()
    return list(smtp_sink.to(address))


async def mailed_link_token(smtp_sink: Any, run_jobs: Any, address: str) -> str:
    """The token of the newest link-confirmation mail to ``address``."""
    for message in reversed(await mails_to(smtp_sink, run_jobs, address)):
        found = re.search(r"/link-identity\?token=([A-Za-z0-9_\-]+)", text_of(message))
        if found:
            return found.group(1)
    raise AssertionError(f"no link-confirmation mail to {address}")


async def confirm_by_mail(client: Any, slug: str, token: str) -> Any:
    return await client.post("/api/v1/auth/identities/confirm", json={"token": token}, headers={"X-Tenant": slug})


async def link_then_sign_in(
    client: Any,
    smtp_sink: Any,
    run_jobs: Any,
    provider_url: str,
    slug: str,
    sub: str,
    claims: dict[str, Any],
    name: str = "corp",
) -> Any:
    """A first sign-in (202), its holder following the mailed link, then the sign-in that counts."""
    first = await sign_in_through_provider(client, provider_url, slug, sub, claims, name)
    assert first.status_code == 202, first.text
    confirmed = await confirm_by_mail(client, slug, await mailed_link_token(smtp_sink, run_jobs, claims["email"]))
    assert confirmed.status_code == 200, confirmed.text
    return await sign_in_through_provider(client, provider_url, slug, sub, claims, name)


async def audit_entries(kernel: Any, tenant: Any, action: str) -> list[AuditEntry]:
    async with kernel.db.session(tenant.id) as session:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.occurred_at)
        )
        return list(rows.scalars())


async def identities_of(kernel: Any, email: str) -> list[UserIdentity]:
    async with kernel.db.session(None) as session:
        rows = await session.execute(
            select(UserIdentity).join(User, User.id == UserIdentity.user_id).where(User.email == email)
        )
        return list(rows.scalars())


async def notice_to(smtp_sink: Any, run_jobs: Any, address: str, subject: str) -> EmailMessage:
    """The one mail to ``address`` whose subject says ``subject`` (the queue delivers in any order)."""
    [message] = [m for m in await mails_to(smtp_sink, run_jobs, address) if subject in str(m["Subject"])]
    return message


def problem_code(response: Any) -> str:
    return str(response.json()["type"]).rsplit(":", 1)[-1]


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


async def test_first_sign_in_is_confirmed_by_mail_then_creates_a_member_with_the_mapped_role(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    sub, email = f"olive-{secrets.token_hex(4)}", f"olive-{secrets.token_hex(4)}@corp.example"
    claims = user_claims(email, ["staff", "sales-managers"])

    # The provider's word creates nothing: no account until the address's holder confirms.
    first = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)
    assert first.status_code == 202, first.text
    assert "access_token" not in first.json()
    assert await kernel.identity.accounts.user_by_email(email) is None
    [mail] = await mails_to(smtp_sink, run_jobs, email)
    assert "create your account" in text_of(mail)
    confirmed = await confirm_by_mail(client, tenant.slug, await mailed_link_token(smtp_sink, run_jobs, email))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["providers"] == ["corp"]

    second = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)
    assert second.status_code == 200, second.text
    profile = await me(client, second.json(), tenant.slug)
    assert profile["email"] == email
    assert profile["role"] == "manager"
    assert profile["email_verified"]

    # Same subject, new e-mail and groups at the provider: still the same user, role unchanged.
    again = await sign_in_through_provider(client, provider_url, tenant.slug, sub, user_claims(f"new-{email}", ["it"]))
    assert again.status_code == 200, again.text
    later = await me(client, again.json(), tenant.slug)
    assert later["user_id"] == profile["user_id"]
    assert later["role"] == "manager"
    signed_in = await audit_entries(kernel, tenant, "auth.signin.succeeded")
    assert len([e for e in signed_in if e.details.get("method") == "oidc"]) == 2


async def test_unmapped_user_gets_the_default_role_or_member(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await configure(
        client,
        await sign_in(tenant, "owner"),
        provider_url,
        role_mapping={"claim": "groups", "map": {"it": "admin"}, "default_role": "viewer"},
    )
    sub = f"v-{secrets.token_hex(4)}"
    response = await link_then_sign_in(
        client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, user_claims(f"{sub}@corp.example", ["elsewhere"])
    )
    assert response.status_code == 200, response.text
    assert (await me(client, response.json(), tenant.slug))["role"] == "viewer"


# -- linking an existing account: only with its holder's proof ------------------------------------


async def owner_and_admins_provider(client: Any, make_tenant: Any, sign_in: Any, provider_url: str) -> Any:
    """A tenant whose admin configured "corp" (a provider that admin controls); its owner signs in
    with a password."""
    tenant = await make_tenant(name="Acme Owners")
    owner_email = f"owner-{secrets.token_hex(4)}@acme.example"
    owner = await sign_in(tenant, "owner", email=owner_email)
    admin = await sign_in(tenant, "admin")
    saved = await configure(client, admin, provider_url)
    assert saved["configured_by"] == (await me_of(client, admin))["user_id"]
    return tenant, owner, owner_email, admin


async def test_an_admins_provider_asserting_the_owners_verified_email_gets_no_token_and_links_nothing(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant, _, owner_email, _ = await owner_and_admins_provider(client, make_tenant, sign_in, provider_url)
    attacker_sub = f"mallory-{secrets.token_hex(4)}"
    response = await sign_in_through_provider(
        client, provider_url, tenant.slug, attacker_sub, user_claims(owner_email, ["it"], verified=True)
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["code"] == "oidc-link-confirmation-sent"
    assert "access_token" not in answer
    assert "refresh_token" not in answer
    assert answer["pending_token"].startswith("iol_")
    assert await identities_of(kernel, owner_email) == []
    async with kernel.db.session(None) as session:
        assert (await session.execute(select(UserIdentity).where(UserIdentity.subject == attacker_sub))).first() is None

    # The owner hears of it: which provider, which workspace, from where; ignoring it is safe.
    [mail] = await mails_to(smtp_sink, run_jobs, owner_email)
    body = text_of(mail)
    assert "Acme Owners" in mail["Subject"]
    assert '"corp"' in body
    assert "localhost" in body  # the provider's host
    assert "127.0.0.1" in body
    assert "python-httpx" in body
    assert "If this was not you, ignore this message" in body
    assert f"http://{tenant.slug}.localhost:8000/link-identity?token=iot_" in body
    [requested] = await audit_entries(kernel, tenant, "identity.link_requested")
    assert requested.actor_label == owner_email
    assert requested.details["provider"] == "corp"
    assert requested.actor_id is None


async def test_the_mailed_link_links_the_owner_yet_the_admins_provider_cannot_sign_the_owner_in(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant, owner, owner_email, _ = await owner_and_admins_provider(client, make_tenant, sign_in, provider_url)
    owner_id = (await me_of(client, owner))["user_id"]
    sub = f"owner-at-idp-{secrets.token_hex(4)}"
    claims = user_claims(owner_email)
    assert (await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)).status_code == 202
    token = await mailed_link_token(smtp_sink, run_jobs, owner_email)

    linked = await confirm_by_mail(client, tenant.slug, token)
    assert linked.status_code == 200, linked.text
    assert linked.json()["subject"] == sub
    [identity] = await identities_of(kernel, owner_email)
    assert str(identity.user_id) == owner_id
    [entry] = await audit_entries(kernel, tenant, "identity.linked")
    assert str(entry.actor_id) == owner_id
    assert entry.details["provider"] == "corp"
    assert entry.details["issuer"] == provider_url
    assert entry.details["method"] == "email-link"
    notice = await notice_to(smtp_sink, run_jobs, owner_email, "was linked")
    assert "through the link mailed to this address" in text_of(notice)
    # The link works once; its page then says so.
    again = await confirm_by_mail(client, tenant.slug, token)
    assert again.status_code == 400
    assert problem_code(again) == "invalid-token"
    page = await client.get(f"/link-identity?token={token}", headers={"X-Tenant": tenant.slug, "Accept": "text/html"})
    assert page.status_code == 400
    assert "This link is not valid" in page.text

    # Through the admin's provider the owner would be more than the admin: refused, and audited.
    refused = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)
    assert refused.status_code == 403, refused.text
    assert problem_code(refused) == "oidc-role-above-provider"
    assert "password" in refused.json()["detail"]
    failed = [e for e in await audit_entries(kernel, tenant, "auth.signin.failed") if e.details.get("method") == "oidc"]
    assert [e.details["reason"] for e in failed] == ["oidc-role-above-provider"]
    assert str(failed[0].actor_id) == owner_id

    # Through a provider the owner configured, the same provider account signs the owner in.
    await configure(client, owner, provider_url, name="owners")
    welcome = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims, name="owners")
    assert welcome.status_code == 200, welcome.text
    profile = await me(client, welcome.json(), tenant.slug)
    assert profile["user_id"] == owner_id
    assert profile["role"] == "owner"


async def test_a_member_here_a_member_elsewhere_and_a_stranger_get_the_same_answer(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant, elsewhere = await make_tenant(), await make_tenant()
    await configure(client, await sign_in(tenant, "admin"), provider_url)
    here_email = f"here-{secrets.token_hex(4)}@corp.example"
    other_email = f"other-{secrets.token_hex(4)}@corp.example"
    stranger_email = f"nobody-{secrets.token_hex(4)}@corp.example"
    await sign_in(tenant, "member", email=here_email)
    await sign_in(elsewhere, "member", email=other_email)

    answers = {}
    for label, email, verified in [
        ("here", here_email, True),
        ("elsewhere", other_email, True),
        ("stranger", stranger_email, True),
        ("here, unverified by the provider", here_email, False),
    ]:
        sub = f"probe-{secrets.token_hex(4)}"
        answers[label] = await sign_in_through_provider(
            client, provider_url, tenant.slug, sub, user_claims(email, verified=verified)
        )

    def shape(response: Any) -> tuple[Any, ...]:
        body = response.json()
        return (
            response.status_code,
            response.headers["content-type"],
            tuple(sorted(body)),
            body["code"],
            body["detail"],
            body["expires_in"],
        )

    shapes = {label: shape(response) for label, response in answers.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert shapes["here"][0] == 202
    assert len({r.json()["pending_token"] for r in answers.values()}) == len(answers)
    # Nothing was linked or created; each address's holder was asked (one mail per address and provider).
    for email in (here_email, other_email, stranger_email):
        assert await identities_of(kernel, email) == []
        assert len(await mails_to(smtp_sink, run_jobs, email)) == 1
    assert await kernel.identity.accounts.user_by_email(stranger_email) is None
    assert "create your account" in text_of((await mails_to(smtp_sink, run_jobs, stranger_email))[0])
    requested = await audit_entries(kernel, tenant, "identity.link_requested")
    assert {e.actor_id for e in requested} == {None}
    assert len({tuple(sorted(e.details)) for e in requested}) == 1


async def test_the_holder_of_a_password_links_a_pending_sign_in_by_giving_it_again(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    email, password = f"pat-{secrets.token_hex(4)}@corp.example", f"pat passphrase {secrets.token_hex(6)}"
    await kernel.identity.accounts.create_member(tenant, email, password, "manager", verified=True)
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": tenant.slug}
    )
    holder = bearer(login.json(), tenant.slug)
    holder_id = (await me_of(client, holder))["user_id"]
    sub = f"pat-{secrets.token_hex(4)}"
    first = await sign_in_through_provider(client, provider_url, tenant.slug, sub, user_claims(email))
    assert first.status_code == 202, first.text
    pending = first.json()["pending_token"]
    mailed = await mailed_link_token(smtp_sink, run_jobs, email)
    confirm = "/api/v1/me/identities/confirm"

    # Someone else signed in here cannot use it, and does not spend it.
    intruder = await sign_in(tenant, "admin")
    stolen = await client.post(confirm, json={"token": pending, "password": password}, headers=intruder)
    assert stolen.status_code == 400
    assert problem_code(stolen) == "invalid-token"
    # A session alone is not enough: the password is asked again, and checked.
    wrong = await client.post(confirm, json={"token": pending, "password": "not it at all"}, headers=holder)
    assert wrong.status_code == 401
    assert await identities_of(kernel, email) == []

    linked = await client.post(confirm, json={"token": pending, "password": password}, headers=holder)
    assert linked.status_code == 200, linked.text
    [identity] = await identities_of(kernel, email)
    assert str(identity.user_id) == holder_id
    [entry] = await audit_entries(kernel, tenant, "identity.linked")
    assert entry.details["method"] == "password"
    assert "with your password" in text_of(await notice_to(smtp_sink, run_jobs, email, "was linked"))
    # One pending link, spent once: the mailed link for it no longer works.
    assert (await confirm_by_mail(client, tenant.slug, mailed)).status_code == 400

    again = await sign_in_through_provider(client, provider_url, tenant.slug, sub, user_claims(email))
    assert again.status_code == 200, again.text
    profile = await me(client, again.json(), tenant.slug)
    assert profile["user_id"] == holder_id
    assert profile["role"] == "manager"  # a member keeps their role


async def test_unlinking_is_audited_and_mailed_and_the_provider_account_must_be_confirmed_again(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    email = f"unl-{secrets.token_hex(4)}@corp.example"
    holder = await sign_in(tenant, "member", email=email)
    sub = f"unl-{secrets.token_hex(4)}"
    signed_in = await link_then_sign_in(client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, user_claims(email))
    assert signed_in.status_code == 200, signed_in.text

    listed = await client.get("/api/v1/me/identities", headers=holder)
    assert listed.status_code == 200
    [identity] = listed.json()
    assert identity["issuer"] == provider_url
    assert identity["subject"] == sub
    assert identity["providers"] == ["corp"]
    stranger = await sign_in(tenant, "admin")
    assert (await client.delete(f"/api/v1/me/identities/{identity['id']}", headers=stranger)).status_code == 404

    removed = await client.delete(f"/api/v1/me/identities/{identity['id']}", headers=holder)
    assert removed.status_code == 204, removed.text
    assert (await client.get("/api/v1/me/identities", headers=holder)).json() == []
    [entry] = await audit_entries(kernel, tenant, "identity.unlinked")
    assert entry.details["issuer"] == provider_url
    assert entry.details["provider"] == "corp"
    notice = await notice_to(smtp_sink, run_jobs, email, "was unlinked")
    assert "no longer signs in as you" in text_of(notice)
    # The provider account is a stranger again: its next sign-in needs a new proof.
    again = await sign_in_through_provider(client, provider_url, tenant.slug, sub, user_claims(email))
    assert again.status_code == 202, again.text


async def test_the_only_way_an_account_signs_in_cannot_be_unlinked(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    sub = f"only-{secrets.token_hex(4)}"
    tokens = await link_then_sign_in(
        client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, user_claims(f"{sub}@corp.example")
    )
    headers = bearer(tokens.json(), tenant.slug)
    [identity] = (await client.get("/api/v1/me/identities", headers=headers)).json()
    refused = await client.delete(f"/api/v1/me/identities/{identity['id']}", headers=headers)
    assert refused.status_code == 409
    assert problem_code(refused) == "last-sign-in-method"


# -- the role cap: a provider yields at most what its configurer holds -----------------------------


async def test_configuration_refuses_role_mappings_above_the_actors_own_and_records_the_configurer(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    for name, permissions in [("sso-admin", ["kernel.settings.write"]), ("nothing", [])]:
        made = await client.post("/api/v1/roles", json={"name": name, "permissions": permissions}, headers=owner)
        assert made.status_code == 201, made.text
    sso_admin = await sign_in(tenant, "sso-admin")
    for mapping in ({"map": {"it": "admin"}}, {"map": {"x": "viewer"}}, {"default_role": "member"}):
        refused = await client.put(
            "/api/v1/oidc/providers/corp", json=provider_config(provider_url, role_mapping=mapping), headers=sso_admin
        )
        assert refused.status_code == 403, refused.text
        assert problem_code(refused) == "role-above-your-own"
        assert refused.json()["errors"][0]["pointer"].startswith("/role_mapping/")
    saved = await configure(client, sso_admin, provider_url, role_mapping={"map": {"x": "nothing"}})
    assert saved["configured_by"] == (await me_of(client, sso_admin))["user_id"]
    # Whoever changes it becomes its configurer.
    changed = await configure(client, owner, provider_url)
    assert changed["configured_by"] == (await me_of(client, owner))["user_id"]
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(OidcProvider))).scalar_one()
    assert str(row.configured_by) == changed["configured_by"]


async def test_a_new_member_gets_the_mapped_role_only_within_the_configurers_permissions(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    admin = await sign_in(tenant, "admin")
    admin_id = (await me_of(client, admin))["user_id"]
    await configure(client, admin, provider_url, role_mapping={"map": {"it": "admin"}})

    async def join(groups: list[str]) -> tuple[Any, Any]:
        sub = f"jit-{secrets.token_hex(4)}"
        claims = user_claims(f"{sub}@corp.example", groups)
        response = await link_then_sign_in(client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, claims)
        return response, lambda: sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)

    within, first_again = await join(["it"])
    assert within.status_code == 200, within.text
    assert (await me(client, within.json(), tenant.slug))["role"] == "admin"

    # The configurer is demoted to manager: "it" would give admin, above the cap, so member instead.
    demoted = await client.patch(f"/api/v1/members/{admin_id}", json={"role": "manager"}, headers=owner)
    assert demoted.status_code == 200, demoted.text
    capped, _ = await join(["it"])
    assert capped.status_code == 200, capped.text
    assert (await me(client, capped.json(), tenant.slug))["role"] == "member"
    # The admin who joined first now holds more than the configurer: refused in turn.
    above = await first_again()
    assert above.status_code == 403, above.text
    assert problem_code(above) == "oidc-role-above-provider"

    # Down to viewer: not even member fits, so nobody new gets in.
    await client.patch(f"/api/v1/members/{admin_id}", json={"role": "viewer"}, headers=owner)
    refused, _ = await join(["it"])
    assert refused.status_code == 403, refused.text
    assert problem_code(refused) == "oidc-role-above-provider"


async def test_a_provider_whose_configurer_left_signs_nobody_in_until_an_admin_saves_it_again(
    client: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    admin = await sign_in(tenant, "admin")
    await configure(client, admin, provider_url)
    sub = f"left-{secrets.token_hex(4)}"
    claims = user_claims(f"{sub}@corp.example")
    assert (
        await link_then_sign_in(client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, claims)
    ).status_code == 200

    removed = await client.delete(f"/api/v1/members/{(await me_of(client, admin))['user_id']}", headers=owner)
    assert removed.status_code == 204
    orphaned = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)
    assert orphaned.status_code == 403, orphaned.text
    assert problem_code(orphaned) == "oidc-provider-orphaned"
    assert "saves it again" in orphaned.json()["detail"]
    # A browser reads the same in a page, with the way forward.
    callback = await authorize_at_provider(await start(client, tenant.slug), provider_url, sub, claims)
    page = await client.get(callback, headers={"Accept": "text/html"})
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "Signing in with Corp did not work" in page.text
    assert "saves it again" in page.text
    assert 'href="/login"' in page.text

    await configure(client, owner, provider_url)
    assert (await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)).status_code == 200


async def test_a_provider_saved_before_the_rule_is_capped_at_the_builtin_admin_role(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, provider_url: str, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    owner_email = f"boss-{secrets.token_hex(4)}@corp.example"
    owner = await sign_in(tenant, "owner", email=owner_email)
    await configure(client, owner, provider_url)
    sub = f"boss-{secrets.token_hex(4)}"
    claims = user_claims(owner_email)
    assert (
        await link_then_sign_in(client, smtp_sink, run_jobs, provider_url, tenant.slug, sub, claims)
    ).status_code == 200

    async with kernel.db.session(tenant.id) as session:
        await session.execute(update(OidcProvider).values(configured_by=None))
    refused = await sign_in_through_provider(client, provider_url, tenant.slug, sub, claims)
    assert refused.status_code == 403, refused.text
    assert problem_code(refused) == "oidc-role-above-provider"
    helper = f"helper-{secrets.token_hex(4)}"
    joined = await link_then_sign_in(
        client, smtp_sink, run_jobs, provider_url, tenant.slug, helper, user_claims(f"{helper}@corp.example", ["it"])
    )
    assert joined.status_code == 200, joined.text
    assert (await me(client, joined.json(), tenant.slug))["role"] == "admin"


async def test_replayed_state_is_refused(client: Any, make_tenant: Any, sign_in: Any, provider_url: str) -> None:
    tenant = await make_tenant()
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    sub = f"r-{secrets.token_hex(4)}"
    callback = await authorize_at_provider(
        await start(client, tenant.slug), provider_url, sub, user_claims(f"{sub}@corp.example")
    )
    assert (await client.get(callback)).status_code == 202
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


# -- in the browser ----------------------------------------------------------------------------------


@pytest.mark.browser
async def test_a_browser_signing_in_through_a_provider_for_the_first_time_reads_what_to_do_then_gets_in(
    browser: Any,
    live_server: Any,
    make_tenant: Any,
    sign_in: Any,
    client: Any,
    provider_url: str,
    smtp_sink: Any,
    run_jobs: Any,
    assert_accessible: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await make_tenant(name="Acme Browser")
    await configure(client, await sign_in(tenant, "owner"), provider_url)
    port = live_server.url.rsplit(":", 1)[1]
    base = f"http://{tenant.slug}.localhost:{port}"
    # The provider sends the browser back to the live server, not to the configured public address.
    monkeypatch.setattr(
        OidcService,
        "redirect_uri",
        lambda _, t, name: f"http://{t.slug}.localhost:{port}/api/v1/auth/oidc/{name}/callback",
    )
    sub = f"web-{secrets.token_hex(4)}"
    email = f"{sub}@corp.example"
    async with httpx.AsyncClient(timeout=10) as idp:
        assert (await idp.put(f"{provider_url}/users/{sub}", json=user_claims(email))).status_code == 204

    async def through_the_provider(page: Any) -> None:
        await page.goto(f"{base}/login")
        await page.click("text=Sign in with Corp")
        await page.fill("input[name=sub]", sub)
        await page.click("button:has-text('Authorize')")

    page = await browser.new_page()
    await through_the_provider(page)
    await page.wait_for_selector("h1:has-text('Check your mailbox')")
    assert page.url.startswith(f"{base}/api/v1/auth/oidc/corp/callback")
    assert "Sign in with a password to link now" in (await page.text_content("main") or "")
    await assert_accessible(page)
    shots = Path.cwd() / "artifacts" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(shots / "oidc-check-your-mailbox.png"), full_page=True)

    # The mailed link, opened in the browser, creates the account; then the provider signs it in.
    token = await mailed_link_token(smtp_sink, run_jobs, email)
    await page.goto(f"{base}/link-identity?token={token}")
    assert "Create your account here with" in (await page.text_content("main") or "")
    await assert_accessible(page)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/login")
    await through_the_provider(page)
    await page.wait_for_url(f"{base}/")
    await page.goto(f"{base}/account")
    assert "Linked sign-ins" in (await page.text_content("main") or "")
    assert await page.locator("tr[data-identity]").count() == 1

    # The answer to a sign-in one browser started, opened in another browser, signs nobody in there.
    other = await browser.new_page()
    await other.goto(f"{base}/login")
    await other.click("text=Sign in with Corp")
    await other.wait_for_selector("input[name=sub]")
    callback = await authorize_at_provider(other.url, provider_url, sub, user_claims(email))
    third = await browser.new_page()
    await third.goto(callback)
    assert "started in another browser" in (await third.text_content("main") or "")


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
