"""Mail-driven flows, end to end over a real SMTP server: e-mail verification, password reset and
invitations. Each test lets the worker deliver the mail, reads it and follows its link."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from email.message import EmailMessage
from typing import Any

from sqlalchemy import update

from inopsio.crypto import digest
from inopsio.identity.emailed_tokens import VERIFY_EMAIL, issue
from inopsio.identity.models import UserToken

PASSWORD = "correct horse battery staple 42"
NEW_PASSWORD = "a brand new passphrase 77"


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def link_token(message: EmailMessage, path: str) -> str:
    match = re.search(rf"{re.escape(path)}\?token=([A-Za-z0-9_\-]+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


async def only_mail_to(smtp_sink: Any, run_jobs: Any, address: str) -> EmailMessage:
    await run_jobs()
    [message] = smtp_sink.to(address)
    return message  # type: ignore[no-any-return]


async def signup(client: Any, smtp_sink: Any, run_jobs: Any) -> dict[str, Any]:
    """A workspace and its owner, through the sign-up API and the link it mails; the mailbox is then emptied."""
    slug = f"mail-{secrets.token_hex(4)}"
    email = f"owner-{secrets.token_hex(4)}@example.com"
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "name": "Ada", "tenant_slug": slug, "tenant_name": "Acme Mail"},
    )
    assert response.status_code == 202, response.text
    token = link_token(await only_mail_to(smtp_sink, run_jobs, email), "/signup/confirm")
    confirmed = await client.post("/api/v1/auth/signup/confirm", json={"token": token})
    assert confirmed.status_code == 201, confirmed.text
    smtp_sink.clear()
    return {"slug": slug, "email": email}


async def login(client: Any, slug: str, email: str, password: str) -> Any:
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": slug}
    )


async def test_signup_mails_a_link_that_creates_the_workspace_with_a_verified_address_once(
    client: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    slug, email = f"mail-{secrets.token_hex(4)}", f"owner-{secrets.token_hex(4)}@example.com"
    body = {"email": email, "password": PASSWORD, "name": "Ada", "tenant_slug": slug, "tenant_name": "Acme Mail"}
    asked = await client.post("/api/v1/auth/signup", json=body)
    assert asked.status_code == 202, asked.text
    # Nothing exists before the link is followed: not the workspace, not the account.
    assert (await client.get("/api/v1/tenant", headers={"X-Tenant": slug})).status_code == 404
    message = await only_mail_to(smtp_sink, run_jobs, email)
    assert message["Subject"] == "Confirm your e-mail address to create your workspace"
    assert "Acme Mail" in text_of(message)
    assert "http://localhost:8000/signup/confirm?token=" in text_of(message)
    token = link_token(message, "/signup/confirm")

    created = await client.post("/api/v1/auth/signup/confirm", json={"token": token})
    assert created.status_code == 201, created.text
    assert created.json()["tenant"]["slug"] == slug
    assert created.json()["email"] == email
    headers = {"X-Tenant": slug}
    tokens = (await login(client, slug, email, PASSWORD)).json()
    me = await client.get("/api/v1/me", headers={**headers, "Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["email_verified"] is True
    assert me.json()["role"] == "owner"

    again = await client.post("/api/v1/auth/signup/confirm", json={"token": token})
    assert again.status_code == 400
    assert again.json()["type"] == "urn:inopsio:problem:invalid-token"


async def test_verification_links_mailed_before_sign_up_confirmed_addresses_still_work_once(
    client: Any, kernel: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    email = f"unverified-{secrets.token_hex(4)}@example.com"
    user = await kernel.identity.accounts.create_member(tenant, email, PASSWORD, "member")
    async with kernel.db.session(tenant.id) as session:
        token = await issue(session, user.id, VERIFY_EMAIL, dt.timedelta(hours=48))
    headers = {"X-Tenant": tenant.slug}

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token}, headers=headers)
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"email": email, "email_verified": True}
    again = await client.post("/api/v1/auth/verify-email", json={"token": token}, headers=headers)
    assert again.status_code == 400
    assert again.json()["type"] == "urn:inopsio:problem:invalid-token"


async def test_forgot_password_answers_the_same_for_unknown_addresses_and_mails_only_members(
    client: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    account = await signup(client, smtp_sink, run_jobs)
    headers = {"X-Tenant": account["slug"]}
    unknown = await client.post("/api/v1/auth/password/forgot", json={"email": "nobody@example.com"}, headers=headers)
    known = await client.post("/api/v1/auth/password/forgot", json={"email": account["email"]}, headers=headers)
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    await run_jobs()
    assert smtp_sink.to("nobody@example.com") == []
    [message] = smtp_sink.to(account["email"])
    assert "/reset-password?token=" in text_of(message)


async def test_password_reset_link_works_once_and_ends_every_session(
    client: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    account = await signup(client, smtp_sink, run_jobs)
    headers = {"X-Tenant": account["slug"]}
    old = (await login(client, account["slug"], account["email"], PASSWORD)).json()
    await client.post("/api/v1/auth/password/forgot", json={"email": account["email"]}, headers=headers)
    token = link_token(await only_mail_to(smtp_sink, run_jobs, account["email"]), "/reset-password")

    weak = await client.post("/api/v1/auth/password/reset", json={"token": token, "password": "short"}, headers=headers)
    assert weak.status_code == 422  # the policy applies, and the link still works afterwards
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}, headers=headers
    )
    assert reset.status_code == 204, reset.text
    assert (await login(client, account["slug"], account["email"], PASSWORD)).status_code == 401
    assert (await login(client, account["slug"], account["email"], NEW_PASSWORD)).status_code == 200
    ended = await client.get("/api/v1/me", headers={**headers, "Authorization": f"Bearer {old['access_token']}"})
    assert ended.status_code == 401

    again = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": "yet another passphrase 9"}, headers=headers
    )
    assert again.status_code == 400
    assert again.json()["type"] == "urn:inopsio:problem:invalid-token"


async def test_expired_reset_link_is_refused(client: Any, kernel: Any, smtp_sink: Any, run_jobs: Any) -> None:
    account = await signup(client, smtp_sink, run_jobs)
    headers = {"X-Tenant": account["slug"]}
    await client.post("/api/v1/auth/password/forgot", json={"email": account["email"]}, headers=headers)
    token = link_token(await only_mail_to(smtp_sink, run_jobs, account["email"]), "/reset-password")
    async with kernel.db.session(None) as session:
        await session.execute(
            update(UserToken)
            .where(UserToken.token_hash == digest(token))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    expired = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}, headers=headers
    )
    assert expired.status_code == 400
    assert expired.json()["type"] == "urn:inopsio:problem:invalid-token"
    assert (await login(client, account["slug"], account["email"], PASSWORD)).status_code == 200


async def test_invitation_creates_an_account_that_signs_in_with_the_invited_role(
    client: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant(name="Invite Co")
    admin = await sign_in(tenant, "admin")
    email = f"new-{secrets.token_hex(4)}@example.com"
    invited = await client.post("/api/v1/invitations", json={"email": email, "role": "manager"}, headers=admin)
    assert invited.status_code == 201, invited.text
    assert invited.json()["status"] == "pending"
    message = await only_mail_to(smtp_sink, run_jobs, email)
    token = link_token(message, "/accept-invitation")

    accepted = await client.post(
        "/api/v1/auth/invitations/accept",
        json={"token": token, "password": PASSWORD, "name": "Newcomer"},
        headers={"X-Tenant": tenant.slug},
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["created_account"] is True
    tokens = (await login(client, tenant.slug, email, PASSWORD)).json()
    me = await client.get(
        "/api/v1/me", headers={"X-Tenant": tenant.slug, "Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["role"] == "manager"
    assert me.json()["email_verified"] is True

    again = await client.post(
        "/api/v1/auth/invitations/accept",
        json={"token": token, "password": PASSWORD},
        headers={"X-Tenant": tenant.slug},
    )
    assert again.status_code == 400
    listed = await client.get("/api/v1/invitations", headers=admin)
    assert [i["status"] for i in listed.json() if i["email"] == email] == ["accepted"]


async def test_invitation_accepted_while_signed_in_as_another_address_is_refused(
    client: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    someone_else = await sign_in(tenant, "member")
    email = f"x-{secrets.token_hex(4)}@example.com"
    await client.post("/api/v1/invitations", json={"email": email, "role": "member"}, headers=admin)
    token = link_token(await only_mail_to(smtp_sink, run_jobs, email), "/accept-invitation")
    refused = await client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}, headers=someone_else
    )
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:inopsio:problem:invitation-for-another-email"


async def test_existing_identity_joins_only_by_proving_it_is_the_invited_one(
    client: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    account = await signup(client, smtp_sink, run_jobs)
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    await client.post("/api/v1/invitations", json={"email": account["email"], "role": "viewer"}, headers=admin)
    token = link_token(await only_mail_to(smtp_sink, run_jobs, account["email"]), "/accept-invitation")
    headers = {"X-Tenant": tenant.slug}
    wrong = await client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": "not the password"}, headers=headers
    )
    assert wrong.status_code == 401
    joined = await client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}, headers=headers
    )
    assert joined.status_code == 201, joined.text
    assert joined.json()["created_account"] is False
    assert (await login(client, tenant.slug, account["email"], PASSWORD)).status_code == 200


async def test_only_owners_invite_owners_and_revoked_invitations_stop_working(
    client: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    email = f"o-{secrets.token_hex(4)}@example.com"
    owner_invite = await client.post("/api/v1/invitations", json={"email": email, "role": "owner"}, headers=admin)
    assert owner_invite.status_code == 403
    unknown_role = await client.post("/api/v1/invitations", json={"email": email, "role": "wizard"}, headers=admin)
    assert unknown_role.status_code == 422
    invited = await client.post("/api/v1/invitations", json={"email": email, "role": "member"}, headers=admin)
    token = link_token(await only_mail_to(smtp_sink, run_jobs, email), "/accept-invitation")
    revoked = await client.delete(f"/api/v1/invitations/{invited.json()['id']}", headers=admin)
    assert revoked.status_code == 204
    refused = await client.post(
        "/api/v1/auth/invitations/accept",
        json={"token": token, "password": PASSWORD},
        headers={"X-Tenant": tenant.slug},
    )
    assert refused.status_code == 400


async def test_html_part_escapes_the_tenant_name(
    client: Any, make_tenant: Any, sign_in: Any, smtp_sink: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant(name="<script>alert(1)</script>")
    admin = await sign_in(tenant, "admin")
    email = f"h-{secrets.token_hex(4)}@example.com"
    await client.post("/api/v1/invitations", json={"email": email, "role": "member"}, headers=admin)
    message = await only_mail_to(smtp_sink, run_jobs, email)
    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text_of(message)  # plain text is not HTML: shown as written
    assert message["From"].addresses[0].display_name == "<script>alert(1)</script>"
