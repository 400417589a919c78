"""E-mail verification and password reset by mailed link: ``/api/v1/auth/verify-email`` and
``/api/v1/auth/password/{forgot,reset}``. The forgot answer never reveals whether an address exists."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody
from sqlalchemy import func, select

from inopsio.db.base import utcnow
from inopsio.deps import CurrentTenant, KernelDep
from inopsio.identity import audit
from inopsio.identity.authentication import PUBLIC_OPT
from inopsio.identity.controllers import Email, Password, client_of
from inopsio.identity.emailed_tokens import (
    RESET_PASSWORD,
    RESET_PASSWORD_LIFETIME,
    VERIFY_EMAIL,
    invalid_token,
    issue,
    spend,
    tenant_link,
)
from inopsio.identity.models import Membership, User
from inopsio.identity.services import normalise_email

Token = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
FORGOT_ANSWER = "If this address belongs to a member here, a link to reset the password is on its way."


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Token


class ForgotIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class ResetIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    password: Password


class VerifiedOut(msgspec.Struct, kw_only=True):
    email: str
    email_verified: bool


class AcceptedOut(msgspec.Struct, kw_only=True):
    detail: str


async def _member(session: Any, user_id: UUID) -> bool:
    found = await session.execute(select(func.count()).select_from(Membership).where(Membership.user_id == user_id))
    return bool(found.scalar())


class RecoveryController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/verify-email", status_code=200, opt={PUBLIC_OPT: True})
    async def verify_email(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[TokenIn]
    ) -> VerifiedOut:
        """Confirm an e-mail address with the token from the verification mail (single-use, 48 hours)."""
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            user_id = await spend(session, data.token, VERIFY_EMAIL)
            user = await session.get(User, user_id)
            if user is None or not await _member(session, user_id):
                raise invalid_token()
            user.email_verified_at = user.email_verified_at or utcnow()
            await audit.record(
                session,
                tenant.id,
                "auth.email.verified",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
            )
        return VerifiedOut(email=user.email, email_verified=True)

    @post("/password/forgot", status_code=202, opt={PUBLIC_OPT: True})
    async def forgot_password(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[ForgotIn]
    ) -> AcceptedOut:
        """Mail a password reset link (single-use, one hour) to a member; the answer is the same for anyone."""
        client = client_of(request)
        email = normalise_email(data.email)
        async with kernel.db.session(tenant.id) as session:
            user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
            member = user is not None and await _member(session, user.id)
            token = await issue(session, user.id, RESET_PASSWORD, RESET_PASSWORD_LIFETIME) if member and user else None
            await audit.record(
                session,
                tenant.id,
                "auth.password.reset_requested",
                actor_id=user.id if member and user else None,
                actor_label=email,
                ip=client.ip,
                user_agent=client.user_agent,
                outcome="success" if member else "failure",
            )
            if token is not None and user is not None:
                await kernel.mail.queue(
                    session,
                    tenant,
                    to=user.email,
                    template="reset_password",
                    context={
                        "link": tenant_link(kernel, tenant, "/reset-password", token),
                        "user_name": user.name,
                        "expires_minutes": int(RESET_PASSWORD_LIFETIME.total_seconds() // 60),
                    },
                )
        return AcceptedOut(detail=FORGOT_ANSWER)

    @post("/password/reset", status_code=204, opt={PUBLIC_OPT: True})
    async def reset_password(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[ResetIn]
    ) -> None:
        """Set a new password with the token from the reset mail; every session of the user ends."""
        client = client_of(request)
        accounts = kernel.identity.accounts
        async with kernel.db.session(tenant.id) as session:
            user_id = await spend(session, data.token, RESET_PASSWORD)
            user = await session.get(User, user_id)
            if user is None or not await _member(session, user_id):
                raise invalid_token()
            # A weak password raises here and rolls the spending back: the link still works.
            accounts.passwords.check_policy(data.password, user_inputs=(user.email, user.name))
            user.password_hash = await accounts.passwords.hash(data.password)
            user.password_changed_at = utcnow()
            # The link reached the mailbox: that proves the address too.
            user.email_verified_at = user.email_verified_at or utcnow()
            await audit.record(
                session,
                tenant.id,
                "auth.password.reset",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
            )
        await accounts.revoke_all_sessions_of(user_id, "password reset")
