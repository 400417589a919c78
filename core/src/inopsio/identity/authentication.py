"""Authenticating each request, and the guard that every route passes.

The middleware runs after tenant resolution. It reads a bearer access token or an API key (or,
without an Authorization header, the web session cookie: see ``web_session``, which also checks
CSRF), checks that the credential belongs to the request's tenant (or resolves the tenant from the
token's claim when the request named none), and counts the request
against the tenant's and the caller's rate limits (counted in-process and sent to Redis in batches)
and checks that the session was not ended (each process holds the ended sessions in memory).

Then it applies each route's ``opt`` (:func:`check_route`): ``public`` routes admit anyone;
otherwise a member is required, and ``permission`` (``<plugin>.<resource>.<action>``) is checked
with Casbin; an API key needs the permission on its own list *and* held by its owner at this moment
(a key whose owner left the tenant does nothing); a module the tenant switched off answers 404.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy import select, update

from inopsio.crypto import digest
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity.models import ApiKey
from inopsio.identity.principal import PRINCIPAL_KEY, Principal
from inopsio.tenancy.resolution import STATE_KEY, TENANCY_OPT, TenantResolutionMiddleware, check_claim

if TYPE_CHECKING:
    from inopsio.identity.rbac import Authorizer
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

API_KEY_PREFIX = "iok_"
PUBLIC_OPT = "public"
PERMISSION_OPT = "permission"
#: Route ``opt`` key set on each plugin's router: the module the route belongs to.
MODULE_OPT = "inopsio_module"
API_KEY_CACHE_SECONDS = 5.0
#: What a user without 2FA may still reach in a tenant that requires it: enough to enrol.
ENROLMENT_PATHS = frozenset({"/api/v1/me", "/api/v1/auth/logout", "/api/v1/auth/web-logout"})
ENROLMENT_PREFIX = "/api/v1/me/totp"


class AuthenticationMiddleware:
    """Resolves the principal of a tenant request and applies rate limits; see the module doc."""

    def __init__(self, app: ASGIApp, kernel: Kernel) -> None:
        self.app = app
        self.kernel = kernel
        # One cache per process, not per route: revocations announced on Redis drop keys from it.
        self._api_keys = kernel.identity.api_keys.cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type: str = scope["type"]
        handler = scope.get("route_handler")
        if scope_type not in ("http", "websocket") or (handler is not None and handler.opt.get(TENANCY_OPT) == "none"):
            await self.app(scope, receive, send)
            return
        try:
            await self._authenticate(scope)
        except Problem as exc:
            await TenantResolutionMiddleware.refuse(
                scope, receive, send, exc.status_code, exc.code, exc.detail, headers=exc.headers, **exc.members
            )
            return
        if handler is not None:
            # The route's access rules, checked here rather than by a Litestar guard (which costs a
            # copy of the route handler per request). What this raises is rendered by Litestar's
            # exception handlers exactly as a guard's would be; but Litestar closes a refused
            # WebSocket before accepting it (a bare HTTP 403 whatever the cause), so a WebSocket is
            # refused here with its close code instead.
            try:
                check_route(ASGIConnection(scope), handler)
            except Problem as exc:
                if scope_type != "websocket":
                    raise
                await TenantResolutionMiddleware.refuse(scope, receive, send, exc.status_code, exc.code, exc.detail)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> None:
        state = scope.setdefault("state", {})
        tenant: TenantInfo | None = state.get(STATE_KEY)
        credential = _bearer(scope)
        principal: Principal | None = None
        if credential is not None:
            if credential.startswith(API_KEY_PREFIX):
                if tenant is None:
                    raise Problem(
                        400, "tenant-required", "An API key is used on its tenant's address or with X-Tenant."
                    )
                principal = await self._api_key_principal(tenant, credential)
            else:
                claims = self.kernel.identity.issuer.verify(credential)
                if tenant is None:
                    tenant = await self.kernel.tenants.directory.get_by_id(claims.tid)
                    if tenant is None or not tenant.is_active:
                        raise Problem(403, "tenant-unavailable", "The token's tenant does not exist or is suspended.")
                    state[STATE_KEY] = tenant
                check_claim(tenant, str(claims.tid))
                principal = Principal(
                    kind="user",
                    tenant_id=claims.tid,
                    user_id=claims.sub,
                    session_id=claims.sid,
                    label=str(claims.sub),
                    mfa=claims.mfa,
                )
        if credential is None and tenant is not None:
            # No Authorization header: a browser's session cookie, if any (CSRF is checked there).
            handler = scope.get("route_handler")
            public = bool(handler is not None and handler.opt.get(PUBLIC_OPT))
            principal = await self.kernel.identity.web_sessions.authenticate(scope, tenant, public=public)
        if tenant is None:
            return
        session_id = principal.session_id if principal is not None else None
        if session_id is not None and self.kernel.identity.accounts.revocations.is_revoked(session_id):
            raise Problem(
                401,
                "session-ended",
                "This session was ended; sign in again.",
                headers={"WWW-Authenticate": 'Bearer realm="inopsio", error="invalid_token"'},
            )
        await self.kernel.quotas.count_request(tenant, principal=principal.rate_key if principal else None)
        if principal is not None:
            state[PRINCIPAL_KEY] = principal

    async def _api_key_principal(self, tenant: TenantInfo, credential: str) -> Principal:
        key_digest = digest(credential)
        # Per tenant: a key sent to the wrong tenant must not poison the cache for its own.
        cache_key = api_key_cache_key(tenant.id, key_digest)
        now = time.monotonic()
        cached = self._api_keys.get(cache_key)
        if cached is None or cached[0] <= now:
            principal, valid_for = await self._load_api_key(tenant, credential, key_digest)
            cached = (now + min(API_KEY_CACHE_SECONDS, valid_for), principal)
            self._api_keys[cache_key] = cached
            if len(self._api_keys) > 10_000:
                self._api_keys.clear()
        principal = cached[1]
        if principal is None or principal.tenant_id != tenant.id:
            raise Problem(
                401,
                "invalid-api-key",
                "This API key is unknown, expired or revoked.",
                headers={"WWW-Authenticate": 'Bearer realm="inopsio", error="invalid_token"'},
            )
        return principal

    async def _load_api_key(
        self, tenant: TenantInfo, credential: str, key_digest: str
    ) -> tuple[Principal | None, float]:
        """The key's principal (``None``: refused), and for how many seconds that answer holds at most."""
        prefix = credential[len(API_KEY_PREFIX) :].split("_", 1)[0]
        async with self.kernel.db.session(tenant.id) as session:
            key = (await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()
            if key is None or not hmac.compare_digest(key.key_hash, key_digest):
                return None, API_KEY_CACHE_SECONDS
            if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utcnow()):
                return None, API_KEY_CACHE_SECONDS
            if key.last_used_at is None or (utcnow() - key.last_used_at).total_seconds() > 60:
                await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))
            valid_for = (key.expires_at - utcnow()).total_seconds() if key.expires_at else API_KEY_CACHE_SECONDS
            return Principal(
                kind="api_key",
                tenant_id=tenant.id,
                user_id=key.created_by,
                api_key_id=key.id,
                label=key.name,
                permissions=frozenset(key.permissions),
            ), valid_for

    def forget_api_keys(self) -> None:
        self._api_keys.clear()


def api_key_cache_key(tenant_id: UUID, key_digest: str) -> str:
    return f"{tenant_id}:{key_digest}"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    if str(scope["type"]) == "websocket":
        # Browsers cannot set headers on a WebSocket handshake: ``?access_token=`` stands in for them.
        for key, token in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == "access_token" and token.strip():
                return token.strip()
    return None


def check_route(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every route's rules: public, member, or a named permission (see the module doc); then the
    module switch: a tenant that turned a module off sees its routes as if they did not exist."""
    _check_access(connection, handler)
    module = handler.opt.get(MODULE_OPT)
    tenant: TenantInfo | None = connection.scope.get("state", {}).get(STATE_KEY)
    if module and module != "kernel" and tenant is not None and not tenant.module_enabled(module):
        raise Problem(404, "not-found", "There is nothing at this address.")


def _check_access(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    opt = handler.opt
    if opt.get(TENANCY_OPT) == "none" or opt.get(PUBLIC_OPT) or _is_schema(connection):
        return
    scope = connection.scope
    state = scope.get("state", {})
    principal: Principal | None = state.get(PRINCIPAL_KEY)
    tenant: TenantInfo | None = state.get(STATE_KEY)
    if tenant is None:
        kernel = connection.app.state.kernel
        raise Problem(
            400,
            "tenant-required",
            f"This endpoint belongs to a tenant: call it on <tenant>.{kernel.settings.base_domain} or send X-Tenant.",
        )
    if principal is None:
        raise Problem(
            401,
            "authentication-required",
            "Sign in, or send an access token or API key.",
            headers={"WWW-Authenticate": 'Bearer realm="inopsio"'},
        )
    permission: str | None = opt.get(PERMISSION_OPT)
    kernel = connection.app.state.kernel
    authorizer = kernel.identity.authorizer
    if principal.kind == "api_key":
        _check_api_key(authorizer, principal, tenant, permission)
        return
    assert principal.user_id is not None
    if authorizer.role_of(principal.user_id, tenant.id) is None:
        raise Problem(403, "not-a-member", "You are not a member of this tenant.")
    if tenant.settings.require_2fa and not principal.mfa and not _is_enrolment(connection):
        raise Problem(
            403,
            "totp-enrolment-required",
            "This tenant requires two-factor authentication: set it up through /api/v1/me/totp, "
            "then refresh your token.",
        )
    if permission is not None and not authorizer.allowed(principal.user_id, tenant.id, permission):
        raise _forbidden(permission, "Your role does not allow this.")


def _check_api_key(authorizer: Authorizer, principal: Principal, tenant: TenantInfo, permission: str | None) -> None:
    """A key acts for its owner, at every request: it does nothing once the owner has left the
    tenant, and only what it lists *and* the owner may do now (so demoting the owner narrows it at
    once). Both answers are dictionary lookups, cleared on every RBAC change in any process."""
    owner = principal.user_id
    if owner is None or authorizer.role_of(owner, tenant.id) is None:
        raise Problem(
            403,
            "api-key-owner-removed",
            "The member who owns this API key is no longer in this tenant, so the key does nothing. "
            "An admin can hand it over to another member (POST /api/v1/api-keys/{id}/owner) or revoke it.",
            api_key_id=str(principal.api_key_id),
        )
    if permission is not None and authorizer.allows(principal, tenant.id, permission):
        return
    if permission is not None and principal.permissions is not None and permission in principal.permissions:
        raise _forbidden(permission, "The owner of this API key no longer holds this permission.")
    raise _forbidden(permission, "This API key is not allowed to do this.")


def _forbidden(permission: str | None, detail: str) -> Problem:
    return Problem(403, "forbidden", detail, permission=permission)


def require_user(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[Principal, UUID]:
    """The signed-in user (not an API key) of a request that passed the guard."""
    principal: Principal | None = connection.scope.get("state", {}).get(PRINCIPAL_KEY)
    if principal is None or principal.kind != "user" or principal.user_id is None:
        raise Problem(403, "user-required", "This needs a signed-in user, not an API key.")
    return principal, principal.user_id


def _is_enrolment(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    path = connection.scope["path"].rstrip("/")
    return path in ENROLMENT_PATHS or path == ENROLMENT_PREFIX or path.startswith(ENROLMENT_PREFIX + "/")


def _is_schema(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The OpenAPI document and its viewer are public and belong to no tenant."""
    openapi = connection.app.openapi_config
    return openapi is not None and bool(openapi.path) and connection.scope["path"].startswith(str(openapi.path))
