"""TOTP two-factor authentication (RFC 6238): enrolment with a QR code, single-use recovery codes,
and the second factor of sign-in.

A code is accepted for the current 30-second step and one step either side (clock drift), and never
for a step at or before the last one accepted for the user: the step is recorded by a conditional
UPDATE, so of two concurrent uses of one code only one can succeed. The secret is stored encrypted
with the installation's key; recovery codes only as SHA-256 digests.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from inopsio.crypto import SecretBox, digest
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.models import RecoveryCode, User
from inopsio.identity.revocations import end_sessions_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.identity.passwords import Passwords
    from inopsio.identity.revocations import SessionRevocations
    from inopsio.identity.services import ClientInfo
    from inopsio.identity.throttle import LoginThrottle
    from inopsio.tenancy.schemas import TenantInfo

ISSUER = "Inopsio"
PERIOD_SECONDS = 30
DIGITS = 6
#: Steps accepted either side of the current one.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
#: No 0/o, 1/l/i: recovery codes are read off paper.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 10
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="inopsio"'}

#: What sign-in calls with the user whose password was right; raises a Problem to refuse.
SecondFactor = Callable[[User], Awaitable[None]]


class TotpEnrolment(msgspec.Struct, kw_only=True):
    #: Base32, for typing into an authenticator by hand.
    secret: str
    otpauth_uri: str
    #: The ``otpauth://`` URI as a QR code: ``data:image/svg+xml,...``.
    qr_svg: str
    issuer: str = ISSUER
    digits: int = DIGITS
    period: int = PERIOD_SECONDS


def totp_for(secret_base32: str, digits: int = DIGITS) -> pyotp.TOTP:
    return pyotp.TOTP(secret_base32, digits=digits, interval=PERIOD_SECONDS)


def matching_step(
    totp: pyotp.TOTP, code: str, *, at: float, after_step: int | None = None, window: int = VALID_WINDOW
) -> int | None:
    """The time step within ``window`` steps of ``at`` whose code is ``code`` and that is later than
    ``after_step`` (the last step accepted), or ``None``: the whole verification rule but the
    recording of the step."""
    code = normalise_code(code)
    if len(code) != totp.digits or not (code.isascii() and code.isdigit()):
        return None
    current = int(at) // totp.interval
    for step in range(max(current - window, 0), current + window + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def normalise_code(code: str) -> str:
    """Codes are often typed or pasted as ``123 456`` or ``abcde-fghjk``."""
    return "".join(code.split()).replace("-", "").lower()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _count_by_tenant(ended: list[tuple[UUID, UUID]]) -> dict[UUID, dict[str, Any]]:
    """The audit details of ended sessions, per tenant: how many, and why."""
    counts: dict[UUID, int] = {}
    for _, tenant_id in ended:
        counts[tenant_id] = counts.get(tenant_id, 0) + 1
    return {tenant_id: {"count": n, "reason": "two-factor enabled"} for tenant_id, n in counts.items()}


def _invalid_code(detail: str = "The authentication code is wrong or was already used.") -> Problem:
    return Problem(422, "invalid-totp", detail, errors=[{"pointer": "/code", "detail": "wrong or already used"}])


class TotpService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        passwords: Passwords,
        throttle: LoginThrottle,
        revocations: SessionRevocations,
    ) -> None:
        self.db = db
        self.box = box
        self.passwords = passwords
        self.throttle = throttle
        self.revocations = revocations
        #: Seconds since the epoch; tests pin it.
        self.clock: Callable[[], float] = time.time

    # -- enrolment -----------------------------------------------------------------------------------

    async def start(self, tenant: TenantInfo, user_id: UUID) -> TotpEnrolment:
        """A new secret, stored encrypted but not yet enabled; confirming a code from it enables it."""
        secret = pyotp.random_base32()
        async with self.db.session(tenant.id) as session:
            user = await self._locked_user(session, user_id)
            if user.totp_enabled_at is not None:
                raise Problem(
                    409,
                    "totp-already-enabled",
                    "Two-factor authentication is already on; turn it off first to enrol another device.",
                )
            user.totp_secret = self.box.encrypt(secret)
            user.totp_last_step = None
            email = user.email
        uri = totp_for(secret).provisioning_uri(name=f"{tenant.slug}/{email}", issuer_name=ISSUER)
        qr_svg = segno.make(uri, error="m").svg_data_uri(scale=4)
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=qr_svg)

    async def confirm(
        self, tenant: TenantInfo, user_id: UUID, code: str, client: ClientInfo, *, keep_session: UUID | None
    ) -> list[str]:
        """Enable 2FA with a code from the new secret; returns fresh recovery codes (shown once).

        Every other session of the user ends with it, in every tenant (web and API, refresh tokens
        included): they were opened with the password alone, which may be exactly what 2FA is being
        turned on against. ``keep_session``, the one turning it on, stays. Each tenant's audit log
        says how many of its sessions ended and why.
        """
        ended: list[tuple[UUID, UUID]] = []
        async with self.db.session(tenant.id) as session:
            user = await self._locked_user(session, user_id)
            if user.totp_enabled_at is not None:
                raise Problem(409, "totp-already-enabled", "Two-factor authentication is already on.")
            if user.totp_secret is None:
                raise Problem(409, "totp-not-started", "Start the enrolment first (POST /api/v1/me/totp).")
            accepted = await self._accept_code(session, user, code)
            if accepted:
                user.totp_enabled_at = utcnow()
                codes = await self._replace_recovery_codes(session, user.id)
                # In the transaction that holds the user's row, so a sign-in racing this one either
                # ends here or sees 2FA on (``AccountService.sign_in``).
                ended = await end_sessions_of(session, user.id, "two-factor enabled", keep=keep_session)
                actor: dict[str, Any] = {
                    "actor_id": user.id,
                    "actor_label": user.email,
                    "ip": client.ip,
                    "user_agent": client.user_agent,
                }
                await audit.record(session, tenant.id, "auth.totp.enabled", **actor)
                counts = _count_by_tenant(ended)
                if tenant.id in counts:
                    await audit.record(session, tenant.id, "auth.session.revoked", **actor, **counts.pop(tenant.id))
        if not accepted:
            raise _invalid_code("The code does not match the new secret; check the device's clock and try again.")
        await self.revocations.announce([session_id for session_id, _ in ended])
        # Other tenants' logs are written in their own transactions (each tenant's rows, its own RLS).
        for other, details in counts.items():
            async with self.db.session(other) as session:
                await audit.record(session, other, "auth.session.revoked", **actor, **details)
        return codes

    async def disable(
        self, tenant: TenantInfo, user_id: UUID, client: ClientInfo, *, code: str | None, password: str | None
    ) -> None:
        """Turn 2FA off, proven by a current code or the password; the recovery codes go with it."""
        if (code is None) == (password is None):
            raise Problem(
                422,
                "code-or-password-required",
                "Send either a current authentication code or your password.",
                errors=[{"pointer": "/code", "detail": "give code or password"}],
            )
        async with self.db.session(tenant.id) as session:
            user = await self._locked_user(session, user_id)
            if user.totp_secret is None:
                raise Problem(409, "totp-not-enabled", "Two-factor authentication is not on.")
            if code is not None:
                proven = await self._accept_code(session, user, code)
            else:
                proven, _ = await self.passwords.verify(user.password_hash, password or "")
            if proven:
                was_enabled = user.totp_enabled_at is not None
                user.totp_secret = None
                user.totp_enabled_at = None
                user.totp_last_step = None
                await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
                if was_enabled:
                    await audit.record(
                        session,
                        tenant.id,
                        "auth.totp.disabled",
                        actor_id=user.id,
                        actor_label=user.email,
                        ip=client.ip,
                        user_agent=client.user_agent,
                    )
            email = user.email
        if not proven:
            await self.throttle.failed(email, client.ip)
            if code is not None:
                raise _invalid_code()
            raise Problem(
                422, "wrong-password", "The password is wrong.", errors=[{"pointer": "/password", "detail": "wrong"}]
            )

    async def regenerate_recovery_codes(
        self, tenant: TenantInfo, user_id: UUID, code: str, client: ClientInfo
    ) -> list[str]:
        """Replace every recovery code (used or not) with ten new ones, proven by a current code."""
        async with self.db.session(tenant.id) as session:
            user = await self._locked_user(session, user_id)
            if user.totp_enabled_at is None:
                raise Problem(409, "totp-not-enabled", "Two-factor authentication is not on.")
            accepted = await self._accept_code(session, user, code)
            if accepted:
                codes = await self._replace_recovery_codes(session, user.id)
                await audit.record(
                    session,
                    tenant.id,
                    "auth.recovery_codes.regenerated",
                    actor_id=user.id,
                    actor_label=user.email,
                    ip=client.ip,
                    user_agent=client.user_agent,
                )
            email = user.email
        if not accepted:
            await self.throttle.failed(email, client.ip)
            raise _invalid_code()
        return codes

    async def remaining_recovery_codes(self, user_id: UUID) -> int:
        async with self.db.session(None) as session:
            found = await session.execute(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            )
            return int(found.scalar() or 0)

    # -- sign-in ---------------------------------------------------------------------------------------

    def second_factor(
        self,
        tenant: TenantInfo,
        account: str,
        client: ClientInfo,
        *,
        totp_code: str | None,
        recovery_code: str | None,
    ) -> SecondFactor:
        """The check :meth:`AccountService.login` runs once the password is right.

        Users without 2FA pass. Otherwise a code is required; a wrong or replayed one counts as a
        failed sign-in of ``account`` (as typed) for the brute-force throttle.
        """

        async def check(user: User) -> None:
            if user.totp_enabled_at is None or user.totp_secret is None:
                return
            if not totp_code and not recovery_code:
                raise Problem(
                    401,
                    "totp-required",
                    "This account uses two-factor authentication: send totp_code (or a recovery_code).",
                    headers=WWW_AUTHENTICATE,
                    second_factor="totp",
                )
            async with self.db.session(tenant.id) as session:
                if totp_code:
                    accepted = await self._accept_code(session, user, totp_code)
                else:
                    accepted = await self._spend_recovery_code(session, user.id, recovery_code or "")
                    if accepted:
                        await audit.record(
                            session,
                            tenant.id,
                            "auth.recovery_code.used",
                            actor_id=user.id,
                            actor_label=user.email,
                            ip=client.ip,
                            user_agent=client.user_agent,
                        )
                if not accepted:
                    await audit.record(
                        session,
                        tenant.id,
                        "auth.signin.failed",
                        actor_id=user.id,
                        actor_label=user.email,
                        ip=client.ip,
                        user_agent=client.user_agent,
                        outcome="failure",
                        reason="invalid-totp" if totp_code else "invalid-recovery-code",
                    )
            if not accepted:
                await self.throttle.failed(account, client.ip)
                if totp_code:
                    raise Problem(
                        401,
                        "invalid-totp",
                        "The authentication code is wrong or was already used.",
                        headers=WWW_AUTHENTICATE,
                    )
                raise Problem(
                    401,
                    "invalid-recovery-code",
                    "This recovery code is wrong or was already used.",
                    headers=WWW_AUTHENTICATE,
                )

        return check

    # -- internals -----------------------------------------------------------------------------------

    async def _locked_user(self, session: AsyncSession, user_id: UUID) -> User:
        # Enrolment steps of one user run one at a time.
        user = await session.get(User, user_id, with_for_update=True)
        if user is None:
            raise Problem(401, "invalid-token", "Unknown user.", headers=WWW_AUTHENTICATE)
        return user

    async def _accept_code(self, session: AsyncSession, user: User, code: str) -> bool:
        """Check ``code`` against the user's secret and record its step; ``False`` if wrong or replayed."""
        if user.totp_secret is None:
            return False
        totp = totp_for(self.box.decrypt(user.totp_secret))
        step = matching_step(totp, code, at=self.clock(), after_step=user.totp_last_step)
        if step is None:
            return False
        # The step only moves forward, and only if no one else moved it past this one meanwhile:
        # PostgreSQL re-checks the condition on the row a concurrent UPDATE left behind.
        recorded = await session.execute(
            update(User)
            .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        if recorded.scalar_one_or_none() is None:
            return False
        set_committed_value(user, "totp_last_step", step)
        return True

    async def _spend_recovery_code(self, session: AsyncSession, user_id: UUID, code: str) -> bool:
        spent = await session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == digest(normalise_code(code)),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .returning(RecoveryCode.id)
            .execution_options(synchronize_session=False)
        )
        return spent.first() is not None

    async def _replace_recovery_codes(self, session: AsyncSession, user_id: UUID) -> list[str]:
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = new_recovery_codes()
        session.add_all(RecoveryCode(user_id=user_id, code_hash=digest(normalise_code(c))) for c in codes)
        return codes
