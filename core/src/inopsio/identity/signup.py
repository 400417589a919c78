"""Sign-up by mailed link, answered the same whether the address already has an account or not.

``POST /api/v1/auth/signup`` creates nothing. It checks the request (address syntax, names, the
workspace address, the password policy), keeps it for 48 hours (encrypted, in Redis) and mails the
address, then answers 202 "check your mailbox":

- a new address gets a link; following it (``POST /api/v1/auth/signup/confirm``) creates the
  workspace and its owner, with the address verified;
- an address that has an account gets a notice instead ("someone tried to create an account with
  your address; if it was you, sign in or reset your password"), with the link only when the request
  gave that account's password, so one identity can still add a workspace of its own.

Both paths do the same work before answering (one argon2 computation: hashing the new password, or
checking it against the account's), so neither the answer nor its timing tells who has an account,
and nobody holds an account or workspace under an address before its holder asked for it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError
from sqlalchemy import select

from inopsio.crypto import digest, new_token
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.emailed_tokens import TOKEN_PREFIX, invalid_token, public_address
from inopsio.identity.models import Membership, User
from inopsio.identity.services import normalise_email
from inopsio.names import check_name
from inopsio.tenancy.models import Tenant
from inopsio.tenancy.schemas import RESERVED_SLUGS, TenantCreate

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.identity.services import ClientInfo
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

SIGNUP_LIFETIME = dt.timedelta(hours=48)
#: Sign-up mails one address receives per hour at most: sign-up must not be a way to flood a mailbox.
#: Requests beyond get the same answer and no mail.
MAILS_PER_ADDRESS_PER_HOUR = 3
#: Workspaces listed in the notice to an existing account.
NOTICE_WORKSPACES = 10
SIGNUP_ANSWER = (
    "Check your mailbox: we sent a link to {email}. Open it within 48 hours to create your workspace. "
    "No mail after a few minutes? Check the spam folder, or sign up again."
)


class PendingSignup(msgspec.Struct, kw_only=True):
    """A sign-up waiting for its address's holder to follow the mailed link."""

    email: str
    name: str
    tenant_slug: str
    tenant_name: str
    #: The new account's password hash; ``None`` when the address has an account (it becomes the owner).
    password_hash: str | None


class SignupAccepted(msgspec.Struct, kw_only=True):
    """The answer to every sign-up that passed the checks, new address or not."""

    email: str
    tenant_slug: str
    detail: str


def _key(kernel: Kernel, token: str) -> str:
    return f"{kernel.settings.redis_namespace}:signup:{digest(token)}"


def _unavailable() -> Problem:
    # Pending sign-ups live in Redis: without it, say so plainly rather than answer 500.
    return Problem(
        503,
        "signup-unavailable",
        "Signing up is unavailable for a moment. Try again shortly.",
        headers={"Retry-After": "30"},
    )


def _slug_problem(status: int, code: str, detail: str, what: str) -> Problem:
    return Problem(status, code, detail, errors=[{"pointer": "/tenant_slug", "detail": what}])


async def request_signup(
    kernel: Kernel, *, email: str, password: str, name: str, tenant_slug: str, tenant_name: str, client: ClientInfo
) -> SignupAccepted:
    """Check a sign-up, keep it and mail its address (a link, or a notice to an existing account)."""
    accounts = kernel.identity.accounts
    email = normalise_email(email)
    check_name(name, "/name")
    check_name(tenant_name, "/tenant_name")
    if tenant_slug in RESERVED_SLUGS:
        raise _slug_problem(
            422, "slug-reserved", f"The address {tenant_slug!r} is reserved; choose another.", "reserved"
        )
    if await kernel.tenants.directory.get(tenant_slug) is not None:
        raise _slug_problem(409, "slug-taken", f"A workspace with the address {tenant_slug!r} exists.", "taken")
    # The policy looks at the request alone, so it answers alike for every address.
    accounts.passwords.check_policy(password, user_inputs=(email, name, tenant_slug, tenant_name))
    existing = await accounts.user_by_email(email)
    if existing is None:
        password_hash: str | None = await accounts.passwords.hash(password)
        proven = False
    else:
        # The same argon2 work as hashing a new password; the answer does not depend on the outcome.
        proven, _ = await accounts.passwords.verify(existing.password_hash, password)
        password_hash = None
    pending = PendingSignup(
        email=email, name=name.strip(), tenant_slug=tenant_slug, tenant_name=tenant_name, password_hash=password_hash
    )
    token = new_token(TOKEN_PREFIX) if existing is None or proven else None
    try:
        allowed = await _mail_allowed(kernel, email)
        if allowed and token is not None:
            await kernel.redis.set(
                _key(kernel, token),
                kernel.identity.box.encrypt(msgspec.json.encode(pending).decode()),
                ex=int(SIGNUP_LIFETIME.total_seconds()),
            )
    except RedisError:
        raise _unavailable() from None
    if allowed:
        if existing is None:
            await _mail_link(kernel, pending, token or "")
        else:
            await _mail_notice(kernel, existing, pending, token)
    return SignupAccepted(email=email, tenant_slug=tenant_slug, detail=SIGNUP_ANSWER.format(email=email))


async def _mail_allowed(kernel: Kernel, email: str) -> bool:
    key = f"{kernel.settings.redis_namespace}:signup-mails:{digest(email)}"
    async with kernel.redis.pipeline(transaction=True) as pipe:
        # The window starts with the first mail of the hour (SET NX keeps it; INCR keeps the TTL).
        pipe.set(key, 0, ex=3600, nx=True)
        pipe.incr(key)
        _, sent = await pipe.execute()
    return int(sent) <= MAILS_PER_ADDRESS_PER_HOUR


def _workspace_address(kernel: Kernel, slug: str) -> str:
    return public_address(kernel, slug, "/")


async def _mail_link(kernel: Kernel, pending: PendingSignup, token: str) -> None:
    await kernel.mail.send(
        None,
        to=pending.email,
        template="signup_confirm",
        context={
            "link": public_address(kernel, None, "/signup/confirm", token=token),
            "user_name": pending.name,
            "workspace_name": pending.tenant_name,
            "workspace_address": _workspace_address(kernel, pending.tenant_slug),
            "expires_hours": int(SIGNUP_LIFETIME.total_seconds() // 3600),
        },
    )


async def _mail_notice(kernel: Kernel, user: User, pending: PendingSignup, token: str | None) -> None:
    """Tell the holder of an existing account that someone signed up with its address."""
    # A user may read their own memberships in every tenant (the policy keyed on the user id).
    async with kernel.db.session(None, user_id=user.id) as session:
        rows = (
            await session.execute(
                select(Tenant.slug, Tenant.name)
                .join(Membership, Membership.tenant_id == Tenant.id)
                .where(Membership.user_id == user.id, Tenant.status == "active")
                .execution_options(include_all_tenants=True)
                .order_by(Tenant.name)
                .limit(NOTICE_WORKSPACES)
            )
        ).all()
    workspaces = [
        {
            "name": name,
            "login": public_address(kernel, slug, "/login"),
            "forgot": public_address(kernel, slug, "/forgot-password"),
        }
        for slug, name in rows
    ]
    await kernel.mail.send(
        None,
        to=user.email,
        template="signup_existing_account",
        context={
            "user_name": user.name,
            "email": user.email,
            "requested_at": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
            "workspaces": workspaces,
            "chooser": public_address(kernel, None, "/login"),
            # Only with the account's own password: then the request's workspace name is shown too.
            "link": public_address(kernel, None, "/signup/confirm", token=token) if token else "",
            "workspace_name": pending.tenant_name if token else "",
            "workspace_address": _workspace_address(kernel, pending.tenant_slug) if token else "",
            "expires_hours": int(SIGNUP_LIFETIME.total_seconds() // 3600),
        },
    )


async def confirm_signup(kernel: Kernel, token: str, client: ClientInfo) -> tuple[User, TenantInfo]:
    """Spend a sign-up link: create the workspace with the address's account as its owner (a new one
    with the request's password, or the existing one). The link works once."""
    try:
        stored = await kernel.redis.getdel(_key(kernel, token))
    except RedisError:
        raise _unavailable() from None
    if stored is None:
        raise invalid_token()
    raw = stored.decode() if isinstance(stored, bytes) else str(stored)
    try:
        pending = msgspec.json.decode(kernel.identity.box.decrypt(raw), type=PendingSignup)
    except (ValueError, msgspec.DecodeError):
        # Kept under a secret key that has changed since: as good as expired.
        raise invalid_token() from None
    accounts = kernel.identity.accounts
    owners: list[User] = []

    async def add_owner(session: AsyncSession, tenant: TenantInfo) -> None:
        # Whoever followed the link holds the mailbox: the address is verified either way.
        user = (await session.execute(select(User).where(User.email == pending.email))).scalar_one_or_none()
        if user is None:
            if pending.password_hash is None:
                # The account this link was for has been deleted since: the link is void.
                raise invalid_token()
            user = User(
                email=pending.email,
                name=pending.name,
                password_hash=pending.password_hash,
                password_changed_at=utcnow(),
            )
            session.add(user)
            await session.flush()
        newly_verified = user.email_verified_at is None
        user.email_verified_at = user.email_verified_at or utcnow()
        await accounts.add_member(session, tenant, user.id, "owner")
        fields: dict[str, Any] = {
            "actor_id": user.id,
            "actor_label": user.email,
            "ip": client.ip,
            "user_agent": client.user_agent,
        }
        await audit.record(session, tenant.id, "tenant.created", slug=tenant.slug, **fields)
        if newly_verified:
            await audit.record(session, tenant.id, "auth.email.verified", via="signup", **fields)
        owners.append(user)

    tenant = await kernel.tenants.create(
        TenantCreate(slug=pending.tenant_slug, name=pending.tenant_name), then=add_owner
    )
    await accounts.authorizer.changed(tenant.id)
    return owners[0], tenant
