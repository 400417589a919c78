"""Web sessions: a browser's sign-in, carried by an HttpOnly session cookie and guarded against CSRF.

The session cookie holds a random secret; only its SHA-256 digest is stored, on the session's
``auth_sessions`` row (kind ``web``), so PostgreSQL is the one record of who a cookie belongs to:
losing Redis neither ends sessions nor lets a cookie resolve to anyone else. Redis still carries
revocations at once (the same ``revoked-session`` marks bearer tokens obey), and each process keeps
a resolved cookie for a few seconds only, so a revocation holds within that time even without Redis.

A cookie is sent by the browser on its own, so a request it authenticates with an unsafe method must
prove it comes from our pages: header ``X-CSRF-Token`` equal to the session's CSRF token (an HMAC of
the session id under the installation's key; pages and scripts read it from the CSRF cookie or the
sign-in answer). Forms posted by htmx send it with ``hx-headers='{"X-CSRF-Token": "..."}'`` on
``<body>``; a plain form field is not read, so the request body stays the handler's alone. Bearer
tokens and API keys are not ambient credentials, so they need no CSRF token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from litestar.datastructures import Cookie
from sqlalchemy import select, update

from inopsio.crypto import derive, digest, new_token
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity.models import AuthSession, User
from inopsio.identity.principal import Principal

if TYPE_CHECKING:
    from litestar.types import Scope
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.identity.services import ClientInfo
    from inopsio.settings import Settings
    from inopsio.tenancy.schemas import TenantInfo

#: ``__Host-``: the browser only keeps it from a secure origin, for Path=/ and without Domain, so a
#: sibling subdomain or a plain-http man in the middle cannot plant one (no session fixation).
SESSION_COOKIE = "__Host-inopsio_session"
CSRF_COOKIE = "__Host-inopsio_csrf"
#: Names on plain http outside production, where a ``__Host-`` cookie would be refused.
INSECURE_SESSION_COOKIE = "inopsio_session"
INSECURE_CSRF_COOKIE = "inopsio_csrf"
CSRF_HEADER_NAME = "X-CSRF-Token"
CSRF_HEADER = CSRF_HEADER_NAME.lower().encode()
SESSION_PREFIX = "iow_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
KIND = "web"
CACHE_SECONDS = 5.0
CACHE_LIMIT = 10_000
SLIDE_SECONDS = 60


class OpenedWebSession(msgspec.Struct, frozen=True, kw_only=True):
    session_id: UUID
    user_id: UUID
    #: The cookie's value; shown to the browser once, never stored.
    secret: str
    csrf_token: str
    expires_at: dt.datetime


class WebLoginOut(msgspec.Struct, kw_only=True):
    """What a web sign-in answers besides its cookies: the CSRF token to send with unsafe requests."""

    user_id: UUID
    session_id: UUID
    csrf_token: str
    csrf_header: str
    expires_at: dt.datetime


class _Resolved(msgspec.Struct, frozen=True, kw_only=True):
    session_id: UUID
    tenant_id: UUID
    user_id: UUID
    expires_at: dt.datetime
    ended: bool
    mfa: bool


def _unauthenticated(code: str, detail: str) -> Problem:
    return Problem(401, code, detail, headers={"WWW-Authenticate": 'Bearer realm="inopsio"'})


class WebSessions:
    """Opens web sessions, sets and clears their cookies, and authenticates requests that carry one."""

    def __init__(self, settings: Settings, db: Database, master: str) -> None:
        self.settings = settings
        self.db = db
        self._csrf_key = derive(master, "csrf")
        # Cookie digest -> (monotonic deadline, session or None when unknown). Per process and short-lived.
        self._cache: dict[str, tuple[float, _Resolved | None]] = {}

    # -- opening and cookies ----------------------------------------------------------------------------

    async def open(self, session: AsyncSession, user: User, tenant: TenantInfo, client: ClientInfo) -> OpenedWebSession:
        """Open a web session for a user who passed sign-in (``AccountService.sign_in``'s opener)."""
        secret = new_token(SESSION_PREFIX)
        row = AuthSession(
            user_id=user.id,
            tenant_id=tenant.id,
            kind=KIND,
            expires_at=utcnow() + dt.timedelta(days=self.settings.refresh_token_days),
            ip=client.ip[:64],
            user_agent=client.user_agent[:300],
            secret_hash=digest(secret),
        )
        session.add(row)
        await session.flush()
        return OpenedWebSession(
            session_id=row.id,
            user_id=user.id,
            secret=secret,
            csrf_token=self.csrf_token(row.id),
            expires_at=row.expires_at,
        )

    def csrf_token(self, session_id: UUID) -> str:
        """The session's CSRF token: derived, not stored, so any page can render it again."""
        mac = hmac.new(self._csrf_key, session_id.bytes, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def is_secure(self, scope: Scope) -> bool:
        """Secure cookies always in production (TLS may end at a proxy, so the scheme we see proves
        nothing there); elsewhere only over https, since a browser drops Secure cookies set over plain
        http and development and tests run on ``http://<tenant>.localhost``."""
        return self.settings.is_production or str(scope.get("scheme", "http")) in ("https", "wss")

    def cookie_names(self, scope: Scope) -> tuple[str, str]:
        if self.is_secure(scope):
            return SESSION_COOKIE, CSRF_COOKIE
        return INSECURE_SESSION_COOKIE, INSECURE_CSRF_COOKIE

    def cookies(self, scope: Scope, opened: OpenedWebSession) -> list[Cookie]:
        """The session cookie (HttpOnly) and the CSRF cookie (readable by the page's scripts)."""
        secure = self.is_secure(scope)
        session_name, csrf_name = self.cookie_names(scope)
        max_age = max(0, int((opened.expires_at - utcnow()).total_seconds()))
        common: dict[str, Any] = {"path": "/", "secure": secure, "samesite": "lax", "max_age": max_age}
        return [
            Cookie(key=session_name, value=opened.secret, httponly=True, **common),
            Cookie(key=csrf_name, value=opened.csrf_token, httponly=False, **common),
        ]

    def cleared_cookies(self, scope: Scope) -> list[Cookie]:
        secure = self.is_secure(scope)
        return [
            Cookie(key=name, value="", path="/", secure=secure, httponly=httponly, samesite="lax", max_age=0)
            for name, httponly in zip(self.cookie_names(scope), (True, False), strict=True)
        ]

    # -- authenticating requests ------------------------------------------------------------------------

    async def authenticate(self, scope: Scope, tenant: TenantInfo, *, public: bool) -> Principal | None:
        """The principal of a request carrying a session cookie (and no Authorization header).

        On a ``public`` route a cookie that does not authenticate is ignored rather than refused, so a
        stale cookie never stands between a browser and the sign-in page.
        """
        secret = self._cookie(scope)
        if secret is None:
            return None
        resolved = await self._resolve(secret)
        if resolved is None:
            if public:
                return None
            raise _unauthenticated("invalid-session", "This session cookie is not valid; sign in again.")
        if resolved.ended or resolved.expires_at <= utcnow():
            if public:
                return None
            raise _unauthenticated("session-ended", "This session was ended; sign in again.")
        if resolved.tenant_id != tenant.id:
            if public:
                return None
            raise Problem(403, "tenant-mismatch", "The credentials belong to another tenant than this address.")
        failure = self._forgery(scope, resolved.session_id)
        if failure is not None:
            if public:
                return None
            raise Problem(403, "csrf-failed", failure, header=CSRF_HEADER_NAME)
        return Principal(
            kind="user",
            tenant_id=resolved.tenant_id,
            user_id=resolved.user_id,
            session_id=resolved.session_id,
            label=str(resolved.user_id),
            mfa=resolved.mfa,
        )

    def _cookie(self, scope: Scope) -> str | None:
        names = (SESSION_COOKIE,) if self.settings.is_production else (SESSION_COOKIE, INSECURE_SESSION_COOKIE)
        for name, value in scope["headers"]:
            if name != b"cookie":
                continue
            for pair in value.decode("latin-1").split(";"):
                key, _, cookie = pair.strip().partition("=")
                if key in names and cookie:
                    return cookie.strip('"')
        return None

    def _forgery(self, scope: Scope, session_id: UUID) -> str | None:
        """Why a cookie-authenticated request may be cross-site, or ``None`` when it is not."""
        headers = scope["headers"]
        scope_type: str = scope["type"]
        if scope_type == "websocket":
            # A WebSocket handshake is a GET that carries cookies and cannot send our header.
            origin = next((v.decode("latin-1") for k, v in headers if k == b"origin"), "")
            host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
            if not origin or urlsplit(origin).netloc.lower() != host.lower():
                return "A WebSocket authenticated by a session cookie must come from this site's pages."
            return None
        method = str(scope.get("method", "GET"))
        if method in SAFE_METHODS:
            return None
        sent = next((v.decode("latin-1") for k, v in headers if k == CSRF_HEADER), "")
        if not sent:
            return "Send the X-CSRF-Token header with requests that change something."
        if not hmac.compare_digest(sent.encode(), self.csrf_token(session_id).encode()):
            return "The X-CSRF-Token header does not match this session."
        return None

    async def _resolve(self, secret: str) -> _Resolved | None:
        key = digest(secret)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        resolved = await self._load(key) if secret.startswith(SESSION_PREFIX) else None
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (now + CACHE_SECONDS, resolved)
        return resolved

    async def _load(self, key: str) -> _Resolved | None:
        # Sessions are kernel rows (a person's, not a tenant's): read without a tenant, so a cookie
        # shown to another tenant is told apart from an unknown one.
        async with self.db.session(None) as session:
            row = (
                await session.execute(
                    select(AuthSession, User.totp_enabled_at)
                    .join(User, User.id == AuthSession.user_id)
                    .where(AuthSession.secret_hash == key, AuthSession.kind == KIND)
                )
            ).one_or_none()
            if row is None:
                return None
            auth_session, totp_enabled_at = row
            now = utcnow()
            ended = auth_session.revoked_at is not None
            if not ended and auth_session.expires_at > now:
                stale = now - dt.timedelta(seconds=SLIDE_SECONDS)
                if auth_session.last_used_at < stale:
                    await session.execute(
                        update(AuthSession)
                        .where(AuthSession.id == auth_session.id, AuthSession.last_used_at < stale)
                        .values(last_used_at=now)
                    )
            return _Resolved(
                session_id=auth_session.id,
                tenant_id=auth_session.tenant_id,
                user_id=auth_session.user_id,
                expires_at=auth_session.expires_at,
                ended=ended,
                mfa=totp_enabled_at is not None,
            )

    def forget(self) -> None:
        self._cache.clear()
