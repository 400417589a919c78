"""Links between accounts and OIDC provider accounts, made only with the account holder's proof.

A provider's word is not proof: a tenant admin who configures a provider controls what it claims,
so a first sign-in through a provider (an issuer and subject no account is linked to yet) never
signs anyone in. It becomes a *pending link*, kept in Redis for an hour under the SHA-256 of two
random tokens, and answered with :class:`LinkConfirmationSent`, the same whoever the address
belongs to (a member here, a member of other tenants only, or nobody), so the answer tells the
caller nothing about which accounts exist. The holder proves the link either way:

- **by mail**: the link mailed to the address (``/link-identity?token=...``) spends the mail token
  (``POST /api/v1/auth/identities/confirm``). For an address without an account this creates it,
  verified, since the mailbox was reached;
- **by password**: signed in here, the holder sends the pending token the sign-in answered with,
  and their password (and second factor, when enrolled) again (``POST /api/v1/me/identities/confirm``):
  a session opened through a provider alone cannot add links to the account it reached.

Either token spends the one pending link, once. Every link and unlink is audited and mailed to the
holder. The record lives in Redis rather than ``user_tokens`` because it carries the provider's
issuer and subject and may concern an address with no account; a lost record only means signing in
through the provider again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select

from inopsio.crypto import digest, new_token
from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.emailed_tokens import TOKEN_PREFIX, invalid_token, tenant_link
from inopsio.identity.models import OidcProvider, User, UserIdentity

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.identity.services import ClientInfo
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

LINK_LIFETIME = dt.timedelta(hours=1)
#: One link mail per address, tenant and provider in this time: a provider its admin controls must
#: not turn the platform into a mail cannon. Later sign-ins still get a pending token.
MAIL_INTERVAL_SECONDS = 300
#: The prefix of the token a first sign-in answers with (the mailed one is ``iot_``).
PENDING_PREFIX = "iol_"
LINK_CONFIRMATION_SENT = "oidc-link-confirmation-sent"
LINK_DETAIL = (
    "Check your mailbox: to sign in with this provider, its account must first be linked to yours, "
    "and we sent a link to confirm that to the address the provider gave us. Already signed in here "
    "with a password? You can also confirm with the pending token."
)
PROOF_BY_MAIL = "email-link"
PROOF_BY_PASSWORD = "password"  # noqa: S105 (the name of a kind of proof, not a secret)


class PendingLink(msgspec.Struct, kw_only=True):
    """A first sign-in through a provider, waiting for the address holder's proof."""

    id: str
    tenant_id: str
    provider: str
    issuer: str
    subject: str
    email: str
    #: The account holding ``email`` when the sign-in happened; ``None``: nobody held it.
    user_id: str | None
    #: The name the provider gave, for an account created by the mailed link.
    name: str = ""
    mail_digest: str
    pending_digest: str


class LinkConfirmationSent(msgspec.Struct, kw_only=True):
    """What a first sign-in through a provider answers (202), whoever the address belongs to."""

    code: str
    detail: str
    #: For the holder of a password here: send it to ``POST /api/v1/me/identities/confirm`` with
    #: that password while signed in. Useless to anyone else.
    pending_token: str
    expires_in: int


class IdentityOut(msgspec.Struct, kw_only=True):
    """A provider account linked to the user."""

    id: UUID
    issuer: str
    subject: str
    #: This tenant's providers with that issuer (empty when none is configured here any more).
    providers: list[str]
    linked_at: dt.datetime


def _host(issuer: str) -> str:
    return issuer.split("//", 1)[-1].split("/", 1)[0]


class IdentityLinks:
    """Pending links, their confirmation, and the user's list of linked provider accounts."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.redis = kernel.redis
        self.prefix = f"{kernel.settings.redis_namespace}:oidc"

    # -- keys ---------------------------------------------------------------------------------------

    def _record_key(self, link_id: str) -> str:
        return f"{self.prefix}:link:{link_id}"

    def _mail_key(self, token_digest: str) -> str:
        return f"{self.prefix}:link-mail:{token_digest}"

    def _pending_key(self, token_digest: str) -> str:
        return f"{self.prefix}:link-pending:{token_digest}"

    def _mailed_key(self, tenant: TenantInfo, provider: str, email: str) -> str:
        who = hashlib.sha256(f"{tenant.id}:{provider}:{email}".encode()).hexdigest()
        return f"{self.prefix}:link-mailed:{who}"

    # -- a first sign-in ------------------------------------------------------------------------------

    async def request(
        self,
        tenant: TenantInfo,
        provider: OidcProvider,
        *,
        issuer: str,
        subject: str,
        email: str,
        name: str,
        client: ClientInfo,
    ) -> LinkConfirmationSent:
        """Keep a pending link, mail its holder, and answer the same whoever holds ``email``."""
        async with self.kernel.db.session(tenant.id) as session:
            user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
            # The same entry whoever holds the address: the audit log is read by the tenant's admins.
            await audit.record(
                session,
                tenant.id,
                "identity.link_requested",
                actor_label=email,
                ip=client.ip,
                user_agent=client.user_agent,
                provider=provider.name,
                issuer=issuer,
                subject=subject,
            )
        mail_token, pending_token = new_token(TOKEN_PREFIX), new_token(PENDING_PREFIX)
        link = PendingLink(
            id=new_id().hex,
            tenant_id=str(tenant.id),
            provider=provider.name,
            issuer=issuer,
            subject=subject,
            email=email,
            user_id=str(user.id) if user is not None else None,
            name=name[:200],
            mail_digest=digest(mail_token),
            pending_digest=digest(pending_token),
        )
        seconds = int(LINK_LIFETIME.total_seconds())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._record_key(link.id), msgspec.json.encode(link), ex=seconds)
            pipe.set(self._mail_key(link.mail_digest), link.id, ex=seconds)
            pipe.set(self._pending_key(link.pending_digest), link.id, ex=seconds)
            await pipe.execute()
        if await self.redis.set(self._mailed_key(tenant, provider.name, email), "1", nx=True, ex=MAIL_INTERVAL_SECONDS):
            await self.kernel.mail.send(
                tenant,
                to=email,
                template="oidc_link",
                context={
                    "link": tenant_link(self.kernel, tenant, "/link-identity", mail_token),
                    "user_name": user.name if user is not None else "",
                    "new_account": user is None,
                    "provider": provider.name,
                    "issuer_host": _host(issuer),
                    "ip": client.ip or "an unknown address",
                    "user_agent": client.user_agent or "an unknown browser",
                    "requested_at": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
                    "expires_minutes": seconds // 60,
                },
            )
        return LinkConfirmationSent(
            code=LINK_CONFIRMATION_SENT, detail=LINK_DETAIL, pending_token=pending_token, expires_in=seconds
        )

    async def describe(self, mail_token: str) -> PendingLink | None:
        """The pending link a mailed token names, without spending it (for the page that confirms it)."""
        link_id = await self.redis.get(self._mail_key(digest(mail_token)))
        if link_id is None:
            return None
        raw = await self.redis.get(self._record_key(link_id.decode()))
        return msgspec.json.decode(raw, type=PendingLink) if raw is not None else None

    # -- proof ------------------------------------------------------------------------------------------

    async def confirm_by_mail(self, tenant: TenantInfo, mail_token: str, client: ClientInfo) -> IdentityOut:
        """The holder followed the mailed link: the address is theirs, so the link is made."""
        link_id = await self.redis.getdel(self._mail_key(digest(mail_token)))
        link = await self._take(link_id.decode() if link_id is not None else None)
        if link is None or link.tenant_id != str(tenant.id):
            raise invalid_token()
        return await self._link(tenant, link, None, PROOF_BY_MAIL, client)

    async def confirm_signed_in(
        self,
        tenant: TenantInfo,
        user_id: UUID,
        pending_token: str,
        password: str,
        client: ClientInfo,
        *,
        totp_code: str | None = None,
        recovery_code: str | None = None,
    ) -> IdentityOut:
        """The signed-in holder confirms with the pending token and their password (and second factor)."""
        link_id = await self.redis.get(self._pending_key(digest(pending_token)))
        raw = await self.redis.get(self._record_key(link_id.decode())) if link_id is not None else None
        link = msgspec.json.decode(raw, type=PendingLink) if raw is not None else None
        # Checked before anything is spent: someone else's pending token is not theirs to burn.
        if link is None or link.tenant_id != str(tenant.id) or link.user_id != str(user_id):
            raise invalid_token()
        accounts = self.kernel.identity.accounts
        # A full sign-in check (throttle, password, second factor, audit) that opens no session.
        await accounts.sign_in(
            tenant,
            link.email,
            password,
            client,
            _no_session,
            second_factor=self.kernel.identity.totp.second_factor(
                tenant, link.email, client, totp_code=totp_code, recovery_code=recovery_code
            ),
        )
        taken = await self._take(link.id)
        if taken is None:  # the mailed link won the race
            raise invalid_token()
        return await self._link(tenant, taken, user_id, PROOF_BY_PASSWORD, client)

    async def _take(self, link_id: str | None) -> PendingLink | None:
        """Spend a pending link (whichever token named it): only one caller ever gets it."""
        if link_id is None:
            return None
        raw = await self.redis.getdel(self._record_key(link_id))
        if raw is None:
            return None
        link = msgspec.json.decode(raw, type=PendingLink)
        await self.redis.delete(self._mail_key(link.mail_digest), self._pending_key(link.pending_digest))
        return link

    async def _link(
        self, tenant: TenantInfo, link: PendingLink, signed_in: UUID | None, method: str, client: ClientInfo
    ) -> IdentityOut:
        async with self.kernel.db.session(tenant.id) as session:
            user = await self._holder(session, link, signed_in)
            if user is None:
                raise invalid_token()
            existing = (
                await session.execute(
                    select(UserIdentity).where(UserIdentity.issuer == link.issuer, UserIdentity.subject == link.subject)
                )
            ).scalar_one_or_none()
            if existing is not None and existing.user_id != user.id:
                raise Problem(
                    409,
                    "identity-already-linked",
                    "This provider account is linked to another account already; its holder must unlink it first.",
                )
            if existing is None:
                existing = UserIdentity(user_id=user.id, issuer=link.issuer, subject=link.subject)
                session.add(existing)
                await session.flush()
            # Reaching the mailbox (or knowing the password of the account holding it) proves the address.
            user.email_verified_at = user.email_verified_at or utcnow()
            await audit.record(
                session,
                tenant.id,
                "identity.linked",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
                provider=link.provider,
                issuer=link.issuer,
                subject=link.subject,
                method=method,
            )
            out = await self._out(session, existing)
            await self._notify(session, tenant, user, "linked", link.provider, link.issuer, method, client)
        return out

    async def _holder(self, session: AsyncSession, link: PendingLink, signed_in: UUID | None) -> User | None:
        """The account the link goes to: the one holding the address, created now if nobody does."""
        user = (await session.execute(select(User).where(User.email == link.email))).scalar_one_or_none()
        if signed_in is not None:
            return user if user is not None and user.id == signed_in else None
        if link.user_id is not None and (user is None or str(user.id) != link.user_id):
            return None  # the account the request was made for is gone
        if user is None:
            user = User(email=link.email, name=link.name, password_hash=None, email_verified_at=utcnow())
            session.add(user)
            await session.flush()
        return user

    # -- the user's own links ---------------------------------------------------------------------------

    async def linked(self, tenant: TenantInfo, user_id: UUID) -> list[IdentityOut]:
        """The provider accounts linked to the user, oldest first."""
        async with self.kernel.db.session(tenant.id) as session:
            rows = (
                await session.execute(
                    select(UserIdentity).where(UserIdentity.user_id == user_id).order_by(UserIdentity.created_at)
                )
            ).scalars()
            return [await self._out(session, row) for row in rows]

    async def unlink(self, tenant: TenantInfo, user_id: UUID, identity_id: UUID, client: ClientInfo) -> None:
        """Remove one of the user's links; the provider account then needs a new proof to sign in."""
        async with self.kernel.db.session(tenant.id) as session:
            row = (
                await session.execute(
                    select(UserIdentity).where(UserIdentity.id == identity_id, UserIdentity.user_id == user_id)
                )
            ).scalar_one_or_none()
            user = await session.get(User, user_id)
            if row is None or user is None:
                raise Problem(404, "not-found", "No such linked sign-in.")
            links = await session.scalar(
                select(func.count()).select_from(UserIdentity).where(UserIdentity.user_id == user_id)
            )
            if user.password_hash is None and links == 1:
                raise Problem(
                    409,
                    "last-sign-in-method",
                    "This is the only way you sign in: set a password first (Forgot your password? on the "
                    "sign-in page), then unlink it.",
                )
            providers = await self._providers(session, row.issuer)
            await session.delete(row)
            await audit.record(
                session,
                tenant.id,
                "identity.unlinked",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
                provider=", ".join(providers),
                issuer=row.issuer,
                subject=row.subject,
                method="signed-in",
            )
            await self._notify(session, tenant, user, "unlinked", ", ".join(providers), row.issuer, "signed-in", client)

    async def _providers(self, session: AsyncSession, issuer: str) -> list[str]:
        names = await session.execute(
            select(OidcProvider.name).where(OidcProvider.issuer == issuer).order_by(OidcProvider.name)
        )
        return list(names.scalars())

    async def _out(self, session: AsyncSession, row: UserIdentity) -> IdentityOut:
        return IdentityOut(
            id=row.id,
            issuer=row.issuer,
            subject=row.subject,
            providers=await self._providers(session, row.issuer),
            linked_at=row.created_at,
        )

    async def _notify(
        self,
        session: AsyncSession,
        tenant: TenantInfo,
        user: User,
        change: str,
        provider: str,
        issuer: str,
        method: str,
        client: ClientInfo,
    ) -> None:
        """Tell the holder about the change, in its transaction: a change that rolls back mails nothing."""
        await self.kernel.mail.queue(
            session,
            tenant,
            to=user.email,
            template="oidc_identity_changed",
            context={
                "user_name": user.name,
                "linked": change == "linked",
                "provider": provider or "a provider no longer configured",
                "issuer_host": _host(issuer),
                "by_mail": method == PROOF_BY_MAIL,
                "ip": client.ip or "an unknown address",
                "user_agent": client.user_agent or "an unknown browser",
                "changed_at": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
            },
        )


async def _no_session(*_: Any) -> None:
    """The opener of a password check that confirms a link: it signs the holder in to nothing new."""
