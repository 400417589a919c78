"""Accounts and sessions: members, sign-in, refresh-token rotation, sign-out, password changes.
(Sign-up, which creates a tenant and its owner by mailed link, is ``identity.signup``.)

A refresh token is single-use: each refresh spends it and issues the next one of the same family
(the session). Presenting a spent token means it was stolen or replayed, so the whole session is
revoked. Revoked sessions are also announced in Redis so their access tokens stop at once, not
when they expire.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update

from inopsio.crypto import KeyRing, SecretBox, digest, master_secret, new_token
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.api_keys import ApiKeyService
from inopsio.identity.models import AuthSession, Membership, RefreshToken, User
from inopsio.identity.passwords import Passwords
from inopsio.identity.rbac import Authorizer, Permission
from inopsio.identity.revocations import SessionRevocations, end_sessions_of
from inopsio.identity.throttle import LoginThrottle
from inopsio.identity.tokens import TokenIssuer
from inopsio.identity.totp import TotpService
from inopsio.identity.web_session import WebSessions
from inopsio.names import check_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.quotas.services import QuotaService
    from inopsio.settings import Settings
    from inopsio.tenancy.schemas import TenantInfo
    from inopsio.tenancy.services import TenantService

log = logging.getLogger("inopsio.identity")
REFRESH_PREFIX = "ior_"
#: What a sign-in opens: an API session (a token pair) or a web session (a cookie).
OpenedT = TypeVar("OpenedT")


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)  # noqa: S105 (the OAuth token type, not a secret)


class ClientInfo(msgspec.Struct, frozen=True, kw_only=True):
    ip: str = ""
    user_agent: str = ""


def normalise_email(raw: str) -> str:
    """The address as stored: syntax checked (no DNS lookup), domain normalised, lower-cased."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Problem(422, "invalid-email", str(exc), errors=[{"pointer": "/email", "detail": str(exc)}]) from None


def _unauthorized(detail: str, code: str = "invalid-credentials", **extra: Any) -> Problem:
    return Problem(401, code, detail, headers={"WWW-Authenticate": 'Bearer realm="inopsio"'}, **extra)


class AccountService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: Redis,
        tenants: TenantService,
        quotas: QuotaService,
        authorizer: Authorizer,
        issuer: TokenIssuer,
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.tenants = tenants
        self.quotas = quotas
        self.authorizer = authorizer
        self.issuer = issuer
        self.passwords = Passwords(settings)
        self.throttle = LoginThrottle(
            redis,
            settings.redis_namespace,
            settings.login_max_failures,
            settings.login_lockout_seconds,
            spray_sources=settings.login_spray_sources,
            address_max_failures=settings.login_address_max_failures,
        )
        #: Ended sessions, known to every process (``identity.revocations``).
        self.revocations = SessionRevocations(redis, settings.redis_namespace, settings.access_token_seconds + 60)

    # -- accounts ------------------------------------------------------------------------------------

    async def user_by_email(self, email: str) -> User | None:
        async with self.db.session(None) as session:
            return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()

    async def create_member(
        self, tenant: TenantInfo, email: str, password: str | None, role: str, *, name: str = "", verified: bool = False
    ) -> User:
        """Create an identity (or reuse the one with this e-mail) and make it a member with ``role``."""
        email = normalise_email(email)
        check_name(name, "/name")
        password_hash = await self.passwords.hash(password) if password else None
        async with self.db.session(tenant.id) as session:
            user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
            if user is None:
                user = User(
                    email=email,
                    name=name,
                    password_hash=password_hash,
                    password_changed_at=utcnow() if password_hash else None,
                    email_verified_at=utcnow() if verified else None,
                )
                session.add(user)
                await session.flush()
            await self.add_member(session, tenant, user.id, role)
        await self.authorizer.changed(tenant.id)
        return user

    async def add_member(self, session: AsyncSession, tenant: TenantInfo, user_id: UUID, role: str) -> None:
        """Make a user a member with ``role``, counted against the tenant's ``users`` quota."""
        await self.quotas.change_gauge(session, tenant, "users", 1)
        session.add(Membership(tenant_id=tenant.id, user_id=user_id, role=role))
        await self.authorizer.assign_role(session, user_id, tenant.id, role)

    # -- sign-in ---------------------------------------------------------------------------------------

    async def login(
        self, tenant: TenantInfo, email: str, password: str, client: ClientInfo, *, second_factor: Any = None
    ) -> TokenPair:
        """Sign in for the API: a session with an access and a refresh token (see :meth:`sign_in`)."""
        return await self.sign_in(tenant, email, password, client, self._open_session, second_factor=second_factor)

    async def sign_in(
        self,
        tenant: TenantInfo,
        email: str,
        password: str,
        client: ClientInfo,
        open_session: Callable[[AsyncSession, User, TenantInfo, ClientInfo], Awaitable[OpenedT]],
        *,
        second_factor: Any = None,
    ) -> OpenedT:
        """Check the password (and second factor) of a member of ``tenant`` and open a session with
        ``open_session`` (API tokens, or the web session cookie), in the transaction that audits it.

        Every failure gives the same answer, whether the address exists or not.
        """
        email = email.strip().lower()
        await self.throttle.before_attempt(email, client.ip)
        user = await self.user_by_email(email)
        ok, new_hash = await self.passwords.verify(user.password_hash if user else None, password)
        member = ok and user is not None and await self.is_member(tenant.id, user.id)
        if not member or user is None:
            await self.throttle.failed(email, client.ip)
            async with self.db.session(tenant.id) as session:
                await audit.record(
                    session,
                    tenant.id,
                    "auth.signin.failed",
                    actor_id=user.id if user else None,
                    actor_label=email,
                    ip=client.ip,
                    user_agent=client.user_agent,
                    outcome="failure",
                )
            raise _unauthorized("The e-mail or password is wrong, or this account is not a member here.")
        if second_factor is not None:
            await second_factor(user)
        async with self.db.session(tenant.id) as session:
            # Turning 2FA on ends every other session while it holds this row; a sign-in whose password
            # was checked before that (and so passed no second factor) must not open one after it.
            totp_now = await session.scalar(
                select(User.totp_enabled_at).where(User.id == user.id).with_for_update(read=True)
            )
            if totp_now is not None and user.totp_enabled_at is None:
                raise _unauthorized(
                    "Two-factor authentication was just turned on for this account: sign in with a code.",
                    "totp-required",
                    second_factor="totp",
                )
            if new_hash:
                await session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
            pair = await open_session(session, user, tenant, client)
            await audit.record(
                session,
                tenant.id,
                "auth.signin.succeeded",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
            )
        await self.throttle.succeeded(email, client.ip)
        return pair

    async def is_member(self, tenant_id: UUID, user_id: UUID) -> bool:
        async with self.db.session(tenant_id) as session:
            found = await session.execute(
                select(func.count()).select_from(Membership).where(Membership.user_id == user_id)
            )
            return bool(found.scalar())

    async def _open_session(
        self, session: AsyncSession, user: User, tenant: TenantInfo, client: ClientInfo, kind: str = "api"
    ) -> TokenPair:
        auth_session = AuthSession(
            user_id=user.id,
            tenant_id=tenant.id,
            kind=kind,
            expires_at=utcnow() + dt.timedelta(days=self.settings.refresh_token_days),
            ip=client.ip[:64],
            user_agent=client.user_agent[:300],
        )
        session.add(auth_session)
        await session.flush()
        return await self._issue(session, auth_session, user.id, tenant.id)

    async def _issue(
        self, session: AsyncSession, auth_session: AuthSession, user_id: UUID, tenant_id: UUID
    ) -> TokenPair:
        refresh = new_token(REFRESH_PREFIX)
        session.add(RefreshToken(session_id=auth_session.id, token_hash=digest(refresh)))
        role = self.authorizer.role_of(user_id, tenant_id) or ""
        # Sign-in has checked the second factor of a user with 2FA. The session that turned 2FA on
        # (the only one that outlives it) gets the claim from its next refresh.
        totp_on = await session.scalar(select(User.totp_enabled_at).where(User.id == user_id))
        access, lifetime = self.issuer.issue(user_id, tenant_id, auth_session.id, role, mfa=totp_on is not None)
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=lifetime)

    async def refresh(self, tenant: TenantInfo, refresh_token: str, client: ClientInfo) -> TokenPair:
        """Spend a refresh token for a new pair; a spent token revokes its whole session."""
        async with self.db.session(tenant.id) as session:
            row = (
                await session.execute(
                    select(RefreshToken, AuthSession)
                    .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                    .where(RefreshToken.token_hash == digest(refresh_token))
                    .with_for_update(of=RefreshToken)
                )
            ).one_or_none()
            if row is None or row.AuthSession.tenant_id != tenant.id:
                raise _unauthorized("This refresh token is not valid.", "invalid-token")
            token, auth_session = row.RefreshToken, row.AuthSession
            if auth_session.revoked_at is not None or auth_session.expires_at <= utcnow():
                raise _unauthorized("This session has ended; sign in again.", "session-ended")
            if token.used_at is not None:
                auth_session.revoked_at = utcnow()
                auth_session.revoked_reason = "refresh token reused"
                await audit.record(
                    session,
                    tenant.id,
                    "auth.refresh_token.reused",
                    actor_id=auth_session.user_id,
                    ip=client.ip,
                    user_agent=client.user_agent,
                    outcome="failure",
                    session_id=str(auth_session.id),
                )
                reused = True
            else:
                token.used_at = utcnow()
                auth_session.last_used_at = utcnow()
                reused = False
                pair = await self._issue(session, auth_session, auth_session.user_id, tenant.id)
        if reused:
            await self._announce_revoked([auth_session.id])
            raise _unauthorized(
                "This refresh token was already used; the session is ended for safety.", "refresh-token-reused"
            )
        if not await self.is_member(tenant.id, auth_session.user_id):
            await self.revoke_sessions(tenant.id, [auth_session.id], "membership ended")
            raise _unauthorized("You are no longer a member of this tenant.", "session-ended")
        return pair

    # -- sessions ---------------------------------------------------------------------------------------

    async def sessions_of(self, user_id: UUID, tenant_id: UUID) -> list[AuthSession]:
        async with self.db.session(tenant_id) as session:
            rows = await session.execute(
                select(AuthSession)
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.tenant_id == tenant_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > utcnow(),
                )
                .order_by(AuthSession.last_used_at.desc())
            )
            return list(rows.scalars())

    async def revoke_sessions(
        self,
        tenant_id: UUID,
        session_ids: list[UUID] | None = None,
        reason: str = "revoked",
        *,
        user_id: UUID | None = None,
        keep: UUID | None = None,
    ) -> list[UUID]:
        """End sessions by id, or every session of ``user_id`` in the tenant (but ``keep``)."""
        async with self.db.session(tenant_id) as session:
            query = update(AuthSession).where(AuthSession.tenant_id == tenant_id, AuthSession.revoked_at.is_(None))
            if session_ids is not None:
                query = query.where(AuthSession.id.in_(session_ids))
            if user_id is not None:
                query = query.where(AuthSession.user_id == user_id)
            if keep is not None:
                query = query.where(AuthSession.id != keep)
            ended = list(
                (
                    await session.execute(
                        query.values(revoked_at=utcnow(), revoked_reason=reason).returning(AuthSession.id)
                    )
                ).scalars()
            )
        await self._announce_revoked(ended)
        return ended

    async def _announce_revoked(self, session_ids: list[UUID]) -> None:
        # Access tokens of the sessions stop now; after their lifetime the mark is not needed.
        await self.revocations.announce(session_ids)

    def is_revoked(self, session_id: UUID) -> bool:
        return self.revocations.is_revoked(session_id)

    # -- passwords ----------------------------------------------------------------------------------

    async def change_password(
        self, tenant: TenantInfo, user_id: UUID, current: str, new: str, keep_session: UUID | None, client: ClientInfo
    ) -> None:
        """Change a password knowing the current one; every other session of the user ends."""
        async with self.db.session(tenant.id) as session:
            user = await session.get(User, user_id)
            if user is None:
                raise _unauthorized("Unknown user.")
            ok, _ = await self.passwords.verify(user.password_hash, current)
            if not ok:
                raise Problem(
                    422,
                    "wrong-password",
                    "The current password is wrong.",
                    errors=[{"pointer": "/current_password", "detail": "wrong"}],
                )
            self.passwords.check_policy(new, user_inputs=(user.email, user.name))
            user.password_hash = await self.passwords.hash(new)
            user.password_changed_at = utcnow()
            await audit.record(
                session,
                tenant.id,
                "auth.password.changed",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
            )
        await self.revoke_all_sessions_of(user_id, "password changed", keep=keep_session)

    async def revoke_all_sessions_of(self, user_id: UUID, reason: str, keep: UUID | None = None) -> None:
        """End a user's sessions in every tenant (their password is the same everywhere)."""
        async with self.db.session(None) as session:
            ended = await end_sessions_of(session, user_id, reason, keep=keep)
        await self._announce_revoked([session_id for session_id, _ in ended])


class Identity:
    """The identity services of one process, built from the settings and the plugins' permissions."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: Redis,
        tenants: TenantService,
        quotas: QuotaService,
        permissions: list[Permission],
    ) -> None:
        master = master_secret(settings)
        self.box = SecretBox(master)
        self.keys = KeyRing(settings, master)
        self.issuer = TokenIssuer(self.keys, settings.access_token_seconds)
        self.authorizer = Authorizer(db, redis, permissions, settings.redis_namespace)
        self.accounts = AccountService(settings, db, redis, tenants, quotas, self.authorizer, self.issuer)
        self.totp = TotpService(
            db, self.box, self.accounts.passwords, self.accounts.throttle, self.accounts.revocations
        )
        self.api_keys = ApiKeyService(db, redis, self.authorizer, settings.redis_namespace)
        self.web_sessions = WebSessions(settings, db, master)
