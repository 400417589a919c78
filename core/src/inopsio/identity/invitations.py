"""Invitations: an admin invites an address with a role; the mailed link (single-use, 7 days) creates
the account or links an existing identity that proves it is the invited one."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy import func, select

from inopsio.crypto import digest, new_token
from inopsio.db.base import utcnow
from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT, require_user
from inopsio.identity.controllers import Email, Password, RoleName, _check_role_exists, client_of
from inopsio.identity.emailed_tokens import TOKEN_PREFIX, invalid_token, tenant_link
from inopsio.identity.models import Invitation, Membership, User
from inopsio.identity.principal import PRINCIPAL_KEY, Principal
from inopsio.identity.services import normalise_email
from inopsio.names import check_name

INVITATION_LIFETIME = dt.timedelta(days=7)


class InvitationIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: RoleName


class InvitationOut(msgspec.Struct, kw_only=True):
    id: UUID
    email: str
    role: str
    status: str
    invited_by: UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    accepted_at: dt.datetime | None
    revoked_at: dt.datetime | None


class AcceptIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    #: Required for a new account; for an existing identity, its password proves it (or sign in as it).
    password: Password | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class AcceptOut(msgspec.Struct, kw_only=True):
    user_id: UUID
    email: str
    role: str
    created_account: bool


def _status(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    return "expired" if invitation.expires_at <= utcnow() else "pending"


def _out(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=invitation.role,
        status=_status(invitation),
        invited_by=invitation.invited_by,
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        accepted_at=invitation.accepted_at,
        revoked_at=invitation.revoked_at,
    )


async def _is_member(session: Any, email: str) -> bool:
    found = await session.execute(
        select(func.count())
        .select_from(Membership)
        .join(User, User.id == Membership.user_id)
        .where(User.email == email)
    )
    return bool(found.scalar())


class InvitationsController(Controller):
    path = "/api/v1/invitations"
    tags = ["members"]

    @post("/", status_code=201, opt={PERMISSION_OPT: "kernel.members.write"})
    async def invite(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[InvitationIn]
    ) -> InvitationOut:
        """Invite an address with a role; the link is mailed. Only owners invite owners."""
        _, actor_id = require_user(request)
        await _check_role_exists(kernel, tenant, data.role)
        if data.role == "owner" and kernel.identity.authorizer.role_of(actor_id, tenant.id) != "owner":
            raise Problem(403, "forbidden", "Only an owner can invite an owner.", permission=None)
        email = normalise_email(data.email)
        token = new_token(TOKEN_PREFIX)
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            if await _is_member(session, email):
                raise Problem(409, "already-member", "This address already belongs to a member here.")
            inviter = await session.get(User, actor_id)
            invitation = Invitation(
                email=email,
                role=data.role,
                token_hash=digest(token),
                invited_by=actor_id,
                expires_at=utcnow() + INVITATION_LIFETIME,
            )
            session.add(invitation)
            await session.flush()
            await audit.record(
                session,
                tenant.id,
                "member.invited",
                actor_id=actor_id,
                actor_label=inviter.email if inviter else "",
                ip=client.ip,
                user_agent=client.user_agent,
                email=email,
                role=data.role,
                invitation=str(invitation.id),
            )
            await kernel.mail.queue(
                session,
                tenant,
                to=email,
                template="invitation",
                context={
                    "link": tenant_link(kernel, tenant, "/accept-invitation", token),
                    "inviter": (inviter.name or inviter.email) if inviter else "An administrator",
                    "role": data.role,
                    "expires_days": INVITATION_LIFETIME.days,
                },
            )
        return _out(invitation)

    @get("/", opt={PERMISSION_OPT: "kernel.members.read"})
    async def list_invitations(self, kernel: KernelDep, tenant: CurrentTenant) -> list[InvitationOut]:
        """Every invitation of this tenant, newest first, with its status."""
        async with kernel.db.session(tenant.id) as session:
            rows = (await session.execute(select(Invitation).order_by(Invitation.created_at.desc()))).scalars()
            return [_out(i) for i in rows]

    @delete("/{invitation_id:uuid}", status_code=204, opt={PERMISSION_OPT: "kernel.members.write"})
    async def revoke(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, invitation_id: FromPath[UUID]
    ) -> None:
        """Revoke a pending invitation: its link stops working."""
        _, actor_id = require_user(request)
        async with kernel.db.session(tenant.id) as session:
            invitation = (
                await session.execute(select(Invitation).where(Invitation.id == invitation_id))
            ).scalar_one_or_none()
            if invitation is None:
                raise Problem(404, "not-found", "No such invitation.")
            if invitation.accepted_at is not None:
                raise Problem(409, "invitation-accepted", "This invitation was accepted; remove the member instead.")
            invitation.revoked_at = invitation.revoked_at or utcnow()
            await audit.record(
                session,
                tenant.id,
                "member.invitation_revoked",
                actor_id=actor_id,
                email=invitation.email,
                invitation=str(invitation.id),
                **msgspec.structs.asdict(client_of(request)),
            )


@post("/api/v1/auth/invitations/accept", status_code=201, tags=["auth"], opt={PUBLIC_OPT: True})
async def accept_invitation(
    request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[AcceptIn]
) -> AcceptOut:
    """Join the tenant with an invitation's token: a new account (give a password), or your existing
    identity (sign in as it, or give its password). Signed in as another address: 403."""
    check_name(data.name, "/name")
    accounts = kernel.identity.accounts
    client = client_of(request)
    principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    async with kernel.db.session(tenant.id) as session:
        invitation = (
            await session.execute(
                select(Invitation).where(Invitation.token_hash == digest(data.token)).with_for_update()
            )
        ).scalar_one_or_none()
        if invitation is None or _status(invitation) != "pending":
            raise invalid_token()
        signed_in = await session.get(User, principal.user_id) if principal and principal.user_id else None
        if principal is not None and (
            principal.kind != "user" or signed_in is None or signed_in.email != invitation.email
        ):
            raise Problem(403, "invitation-for-another-email", "This invitation was sent to another e-mail address.")
        user = (await session.execute(select(User).where(User.email == invitation.email))).scalar_one_or_none()
        created = user is None
        if user is None:
            if not data.password:
                raise Problem(
                    422,
                    "password-required",
                    "Choose a password for your new account.",
                    errors=[{"pointer": "/password", "detail": "required"}],
                )
            accounts.passwords.check_policy(data.password, user_inputs=(invitation.email, data.name))
            user = User(
                email=invitation.email,
                name=data.name.strip(),
                password_hash=await accounts.passwords.hash(data.password),
                password_changed_at=utcnow(),
                # The token reached this mailbox.
                email_verified_at=utcnow(),
            )
            session.add(user)
            await session.flush()
        elif signed_in is None:
            await accounts.throttle.before_attempt(user.email, client.ip)
            ok, _ = await accounts.passwords.verify(user.password_hash, data.password or "")
            if not ok:
                await accounts.throttle.failed(user.email, client.ip)
                raise Problem(
                    401,
                    "identity-proof-required",
                    "An account with this e-mail exists: sign in as it, or give its password.",
                    headers={"WWW-Authenticate": 'Bearer realm="inopsio"'},
                )
        if await _is_member(session, user.email):
            raise Problem(409, "already-member", "You are already a member here.")
        await _check_role_exists(kernel, tenant, invitation.role)
        await accounts.add_member(session, tenant, user.id, invitation.role)
        invitation.accepted_at = utcnow()
        invitation.accepted_by = user.id
        user.email_verified_at = user.email_verified_at or utcnow()
        await audit.record(
            session,
            tenant.id,
            "member.joined",
            actor_id=user.id,
            actor_label=user.email,
            ip=client.ip,
            user_agent=client.user_agent,
            role=invitation.role,
            invitation=str(invitation.id),
            created_account=created,
        )
    await kernel.identity.authorizer.changed(tenant.id)
    return AcceptOut(user_id=user.id, email=user.email, role=invitation.role, created_account=created)
