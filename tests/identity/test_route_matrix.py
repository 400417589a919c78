"""Every HTTP route of the app, called by every built-in role, an anonymous caller, another tenant's
member, a caller naming no tenant and the platform operator: each gets exactly what the route's
declared access allows.

``ROUTES`` is the explicit table of what each route requires. A route of the app that is in neither
the table nor one of the documented rules (``rule_for``) fails the test, so a new route cannot
arrive unguarded without someone deciding, here, who may call it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar.routes import HTTPRoute, WebSocketRoute

from inopsio.errors import PROBLEM_MEDIA_TYPE
from inopsio.identity.rbac import BUILTIN_ROLES
from inopsio.platform.auth import create_operator_token, operator_guard
from inopsio.tenancy.schemas import TenantCreate


@dataclass(frozen=True)
class Access:
    """Who may call a route: ``public`` (anyone on a tenant), ``member`` (any member of the tenant),
    ``permission`` (members whose role grants it), ``open`` (anyone, outside tenants) or ``operator``
    (the platform operator, outside tenants)."""

    kind: str
    permission: str | None = None


PUBLIC = Access("public")
MEMBER = Access("member")
OPEN = Access("open")
#: The two doors of the web shell (sign-in, start page): public on a tenant's address; on the
#: platform's own address they answer too (the workspace chooser, a redirect to it).
ENTRY = Access("entry")
OPERATOR = Access("operator")
#: The OpenAPI document and viewer: for anyone, tenant or not, but a credential sent along is still checked.
SCHEMA = Access("schema")


def needs(permission: str) -> Access:
    return Access("permission", permission)


#: What every route of the kernel (and of the test plugin, always loaded here) requires.
ROUTES: dict[tuple[str, str], Access] = {
    # health and sign-up: outside tenants, for anyone
    ("GET", "/health/live"): OPEN,
    ("GET", "/health/ready"): OPEN,
    ("POST", "/api/v1/auth/signup"): OPEN,
    ("POST", "/api/v1/auth/signup/confirm"): OPEN,
    # the web shell's pages (the API behind them is in this table too)
    ("GET", "/signup"): OPEN,
    ("GET", "/signup/confirm"): OPEN,
    ("GET", "/login"): ENTRY,
    ("GET", "/"): ENTRY,
    ("GET", "/forgot-password"): PUBLIC,
    ("GET", "/reset-password"): PUBLIC,
    ("GET", "/verify-email"): PUBLIC,
    ("GET", "/accept-invitation"): PUBLIC,
    ("GET", "/link-identity"): PUBLIC,
    ("GET", "/account"): MEMBER,
    ("GET", "/cards/welcome"): MEMBER,
    ("GET", "/admin/members"): needs("kernel.members.read"),
    ("GET", "/admin/api-keys"): needs("kernel.api_keys.write"),
    ("GET", "/admin/roles"): needs("kernel.roles.read"),
    ("GET", "/admin/settings"): needs("kernel.settings.write"),
    ("GET", "/admin/audit"): needs("kernel.audit.read"),
    ("GET", "/admin/webhooks"): needs("kernel.webhooks.write"),
    ("GET", "/admin/usage"): needs("kernel.settings.write"),
    ("GET", "/api/v1/me/notifications"): MEMBER,
    ("POST", "/api/v1/tenant/logo"): needs("kernel.settings.write"),
    ("GET", "/branding/{asset_id:uuid}"): PUBLIC,
    # the operator console: its sign-in is open, the rest needs the operator token (cookie or bearer)
    ("GET", "/operator/login"): OPEN,
    ("POST", "/operator/session"): OPEN,
    ("POST", "/operator/logout"): OPERATOR,
    ("GET", "/operator"): OPERATOR,
    ("GET", "/operator/tenants/{tenant_id:uuid}"): OPERATOR,
    ("GET", "/api/v1/automation/node-types"): MEMBER,
    # Prometheus metrics: outside tenants; with INOPSIO_METRICS_TOKEN set (not in tests) it checks that token
    ("GET", "/metrics"): OPEN,
    # the tenant itself, and the ways in
    ("GET", "/api/v1/tenant"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/refresh"): PUBLIC,
    ("POST", "/api/v1/auth/web-login"): PUBLIC,
    ("POST", "/api/v1/auth/verify-email"): PUBLIC,
    ("POST", "/api/v1/auth/password/forgot"): PUBLIC,
    ("POST", "/api/v1/auth/password/reset"): PUBLIC,
    ("POST", "/api/v1/auth/invitations/accept"): PUBLIC,
    ("GET", "/api/v1/auth/oidc/{name:str}/start"): PUBLIC,
    ("GET", "/api/v1/auth/oidc/{name:str}/callback"): PUBLIC,
    ("POST", "/api/v1/auth/identities/confirm"): PUBLIC,
    ("GET", "/api/v1/me/identities"): MEMBER,
    ("POST", "/api/v1/me/identities/confirm"): MEMBER,
    ("DELETE", "/api/v1/me/identities/{identity_id:uuid}"): MEMBER,
    # one's own account
    ("POST", "/api/v1/auth/logout"): MEMBER,
    ("POST", "/api/v1/auth/web-logout"): MEMBER,
    ("GET", "/api/v1/me"): MEMBER,
    ("GET", "/api/v1/me/sessions"): MEMBER,
    ("DELETE", "/api/v1/me/sessions/{session_id:uuid}"): MEMBER,
    ("POST", "/api/v1/me/password"): MEMBER,
    ("POST", "/api/v1/me/totp"): MEMBER,
    ("DELETE", "/api/v1/me/totp"): MEMBER,
    ("POST", "/api/v1/me/totp/confirm"): MEMBER,
    ("POST", "/api/v1/me/totp/recovery-codes"): MEMBER,
    # members, invitations, roles
    ("GET", "/api/v1/members"): needs("kernel.members.read"),
    ("PATCH", "/api/v1/members/{user_id:uuid}"): needs("kernel.members.write"),
    ("DELETE", "/api/v1/members/{user_id:uuid}"): needs("kernel.members.write"),
    ("POST", "/api/v1/members/{user_id:uuid}/revoke-sessions"): needs("kernel.members.write"),
    ("GET", "/api/v1/invitations"): needs("kernel.members.read"),
    ("POST", "/api/v1/invitations"): needs("kernel.members.write"),
    ("DELETE", "/api/v1/invitations/{invitation_id:uuid}"): needs("kernel.members.write"),
    ("GET", "/api/v1/roles"): needs("kernel.roles.read"),
    ("POST", "/api/v1/roles"): needs("kernel.roles.write"),
    ("PUT", "/api/v1/roles/{name:str}"): needs("kernel.roles.write"),
    ("DELETE", "/api/v1/roles/{name:str}"): needs("kernel.roles.write"),
    ("GET", "/api/v1/permissions"): needs("kernel.roles.read"),
    # tenant administration
    ("GET", "/api/v1/api-keys"): needs("kernel.api_keys.write"),
    ("POST", "/api/v1/api-keys"): needs("kernel.api_keys.write"),
    ("DELETE", "/api/v1/api-keys/{key_id:uuid}"): needs("kernel.api_keys.write"),
    ("POST", "/api/v1/api-keys/{key_id:uuid}/owner"): needs("kernel.api_keys.write"),
    ("GET", "/api/v1/audit"): needs("kernel.audit.read"),
    ("GET", "/api/v1/tenant/settings"): needs("kernel.settings.write"),
    ("PATCH", "/api/v1/tenant/settings"): needs("kernel.settings.write"),
    ("GET", "/api/v1/oidc/providers"): needs("kernel.settings.write"),
    ("PUT", "/api/v1/oidc/providers/{name:str}"): needs("kernel.settings.write"),
    ("DELETE", "/api/v1/oidc/providers/{name:str}"): needs("kernel.settings.write"),
    # events
    ("GET", "/api/v1/events"): needs("kernel.events.read"),
    ("GET", "/api/v1/events/catalog"): MEMBER,
    # real time: the handshake is guarded like a request; a refusal closes it with 4000 + the status
    ("WS", "/api/v1/ws"): needs("kernel.realtime.connect"),
    ("GET", "/api/v1/events/deliveries"): needs("kernel.events.admin"),
    ("POST", "/api/v1/events/deliveries/{event_id:uuid}/{handler:str}/replay"): needs("kernel.events.admin"),
    # jobs (a job of another tenant answers 404) and outgoing webhooks
    ("GET", "/api/v1/jobs/{job_id:str}"): MEMBER,
    ("GET", "/api/v1/webhooks"): needs("kernel.webhooks.write"),
    ("POST", "/api/v1/webhooks"): needs("kernel.webhooks.write"),
    ("GET", "/api/v1/webhooks/{subscription_id:uuid}"): needs("kernel.webhooks.write"),
    ("PATCH", "/api/v1/webhooks/{subscription_id:uuid}"): needs("kernel.webhooks.write"),
    ("DELETE", "/api/v1/webhooks/{subscription_id:uuid}"): needs("kernel.webhooks.write"),
    ("GET", "/api/v1/webhooks/{subscription_id:uuid}/attempts"): needs("kernel.webhooks.write"),
    ("POST", "/api/v1/webhooks/{subscription_id:uuid}/ping"): needs("kernel.webhooks.write"),
    ("POST", "/api/v1/webhooks/{subscription_id:uuid}/rotate-secret"): needs("kernel.webhooks.write"),
    # the platform operator's API
    ("GET", "/api/v1/platform/tenants"): OPERATOR,
    ("POST", "/api/v1/platform/tenants"): OPERATOR,
    ("GET", "/api/v1/platform/tenants/{tenant_id:uuid}"): OPERATOR,
    ("POST", "/api/v1/platform/tenants/{tenant_id:uuid}/suspend"): OPERATOR,
    ("POST", "/api/v1/platform/tenants/{tenant_id:uuid}/resume"): OPERATOR,
    ("PATCH", "/api/v1/platform/tenants/{tenant_id:uuid}/settings"): OPERATOR,
    ("GET", "/api/v1/platform/tenants/{tenant_id:uuid}/quotas"): OPERATOR,
    ("PUT", "/api/v1/platform/tenants/{tenant_id:uuid}/quotas"): OPERATOR,
    ("PATCH", "/api/v1/platform/tenants/{tenant_id:uuid}/quotas"): OPERATOR,
    ("GET", "/api/v1/platform/tenants/{tenant_id:uuid}/usage"): OPERATOR,
    # the test plugin
    ("GET", "/api/v1/sample/public-notes/{note_id:uuid}"): PUBLIC,
    ("GET", "/api/v1/sample/notes"): needs("sample.notes.read"),
    ("POST", "/api/v1/sample/notes"): needs("sample.notes.write"),
    ("GET", "/api/v1/sample/notes/{note_id:uuid}"): needs("sample.notes.read"),
    ("DELETE", "/api/v1/sample/notes/{note_id:uuid}"): needs("sample.notes.delete"),
}

#: The kernel's permissions and the built-in roles that hold them by default (owner holds everything).
KERNEL_DEFAULT_GRANTS = {
    "kernel.members.read": {"owner", "admin", "manager"},
    "kernel.members.write": {"owner", "admin"},
    "kernel.roles.read": {"owner", "admin"},
    "kernel.roles.write": {"owner", "admin"},
    "kernel.settings.write": {"owner", "admin"},
    "kernel.api_keys.write": {"owner", "admin"},
    "kernel.audit.read": {"owner", "admin"},
    "kernel.events.read": {"owner", "admin", "manager", "member"},
    "kernel.events.admin": {"owner", "admin"},
    "kernel.realtime.connect": set(BUILTIN_ROLES),
    "kernel.webhooks.write": {"owner", "admin"},
}

ANONYMOUS, OTHER_TENANT, NO_TENANT, PLATFORM_OPERATOR = "anonymous", "other-tenant", "no-tenant", "operator"
PRINCIPALS = [*BUILTIN_ROLES, ANONYMOUS, OTHER_TENANT, NO_TENANT, PLATFORM_OPERATOR]
#: Routes that end the caller's session: each role calls them with a session of its own.
SESSION_ENDING = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/web-logout")}
GUARD_REFUSALS = {
    "authentication-required",
    "forbidden",
    "not-a-member",
    "tenant-mismatch",
    "tenant-required",
    "invalid-token",
    "unauthorized",
    "totp-enrolment-required",
}
PARAM_RE = re.compile(r"\{(\w+):(\w+)\}")


def rule_for(method: str, path: str, handler: Any) -> Access | None:
    """The documented rules for routes outside the table, or ``None`` when none applies.

    - ``/schema``: the OpenAPI document and its viewer, public and outside tenants (its unknown
      paths answer the viewer's own HTML 404, not a problem document);
    - ``OPTIONS`` (static files' too): Litestar's generated answer (the allowed methods; it runs no
      handler) carries no ``opt`` of its own, so it is guarded like a members' route (the platform
      API's like the platform API); without CORS configured no browser preflight needs it to be public;
    - ``/static``: the kernel's and plugins' static files (CSS, pinned browser libraries), open;
    - a plugin's route (not the kernel's) declaring a ``permission`` in its own namespace, or
      ``public``: checked by the matrix from what it declares.
    """
    if path == "/schema" or path.startswith("/schema/"):
        return SCHEMA
    if method == "OPTIONS":
        return declared_access(handler)
    if path.startswith("/static/"):
        return OPEN
    module = handler.opt.get("inopsio_module")
    if module and module != "kernel":
        permission = handler.opt.get("permission")
        if handler.opt.get("public"):
            return PUBLIC
        if permission and permission.startswith(module + "."):
            return needs(permission)
    return None


def app_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path template, handler) of every route; a WebSocket route's method is ``WS``."""
    found = []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            found.append(("WS", route.path, route.route_handler))
            continue
        assert isinstance(route, HTTPRoute), f"{route.path}: a {type(route).__name__}; add it to this test"
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                found.append((method, route.path, handler))
    return sorted(found, key=lambda r: (r[1], r[0]))


def declared_access(handler: Any) -> Access:
    """What the handler's ``opt`` and guards say (the table must agree)."""
    opt = handler.opt
    if opt.get("tenancy") == "none":
        guards = [g for layer in handler.ownership_layers for g in (layer.guards or [])]
        return OPERATOR if operator_guard in guards else OPEN
    if opt.get("public"):
        return ENTRY if opt.get("entry") else PUBLIC
    if opt.get("permission"):
        return needs(opt["permission"])
    return MEMBER


def concrete(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        kind = match.group(2)
        if kind == "uuid":
            return str(uuid.uuid4())
        if kind == "int":
            return "1"
        return "matrix-probe"

    return PARAM_RE.sub(value, path)


def test_every_route_is_in_the_table_or_a_documented_rule(inopsio_app: Any) -> None:
    missing, disagreeing = [], []
    for method, path, handler in app_routes(inopsio_app):
        if (method, path) in ROUTES:
            if declared_access(handler) != ROUTES[(method, path)]:
                disagreeing.append(
                    f"{method} {path}: declares {declared_access(handler)}, table says {ROUTES[(method, path)]}"
                )
        elif rule_for(method, path, handler) is None:
            missing.append(f"{method} {path} ({declared_access(handler)})")
    assert not missing, "routes in no table or rule (decide who may call them):\n" + "\n".join(missing)
    assert not disagreeing, "\n".join(disagreeing)


def test_kernel_permissions_are_granted_by_default_as_documented(kernel: Any) -> None:
    authorizer = kernel.identity.authorizer
    declared = {name: {"owner", *p.roles} for name, p in authorizer.permissions.items() if name.startswith("kernel.")}
    assert declared == KERNEL_DEFAULT_GRANTS


@dataclass
class Member:
    email: str
    password: str
    headers: dict[str, str]


@dataclass
class Cast:
    tenant: Any
    members: dict[str, Member]
    other: dict[str, str]
    operator: dict[str, str]


async def _sign_in(client: Any, kernel: Any, tenant: Any, role: str) -> Member:
    email = f"matrix-{role}-{secrets.token_hex(4)}@example.com"
    password = f"matrix passphrase {secrets.token_hex(8)}"
    await kernel.identity.accounts.create_member(tenant, email, password, role, verified=True)
    return Member(email, password, await _login(client, tenant.slug, email, password))


async def _login(client: Any, slug: str, email: str, password: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": slug}
    )
    assert response.status_code == 200, response.text
    return {"X-Tenant": slug, "Authorization": f"Bearer {response.json()['access_token']}"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cast(inopsio_app: Any) -> AsyncIterator[Cast]:
    """One tenant with a signed-in member of each built-in role, and a member of another tenant."""
    kernel, client = inopsio_app.state.kernel, inopsio_app.state.test_client
    tenant = await kernel.tenants.create(
        msgspec.convert({"slug": f"matrix-{secrets.token_hex(4)}", "name": "Matrix"}, TenantCreate)
    )
    # The matrix sends a few hundred requests a minute: lift the rate limits of this tenant only.
    await kernel.tenants.set_quotas(tenant.id, {"api_calls_per_minute": None, "requests_per_minute_per_user": None})
    other_tenant = await kernel.tenants.create(
        msgspec.convert({"slug": f"matrix-other-{secrets.token_hex(4)}", "name": "Other"}, TenantCreate)
    )
    members = {role: await _sign_in(client, kernel, tenant, role) for role in BUILTIN_ROLES}
    other = await _sign_in(client, kernel, other_tenant, "owner")
    operator = {"Authorization": f"Bearer {await create_operator_token(kernel.db, f'matrix-{secrets.token_hex(3)}')}"}
    # The foreign owner's token, sent to this tenant.
    yield Cast(tenant, members, {**other.headers, "X-Tenant": tenant.slug}, operator)


async def _headers(client: Any, cast: Cast, principal: str, method: str, path: str) -> dict[str, str]:
    if principal in cast.members:
        member = cast.members[principal]
        if (method, path) in SESSION_ENDING:
            return await _login(client, cast.tenant.slug, member.email, member.password)
        return member.headers
    return {
        ANONYMOUS: {"X-Tenant": cast.tenant.slug},
        OTHER_TENANT: cast.other,
        NO_TENANT: {},
        PLATFORM_OPERATOR: cast.operator,
    }[principal]


def _refusal(access: Access, principal: str, kernel: Any) -> tuple[int, str] | None:
    """The guard's (or tenant check's) answer this principal must get, or ``None``: let through."""
    if access.kind == "open":
        return None
    if access.kind == "schema":
        return {OTHER_TENANT: (403, "tenant-mismatch"), PLATFORM_OPERATOR: (401, "invalid-token")}.get(principal)
    if access.kind == "operator":
        return None if principal == PLATFORM_OPERATOR else (401, "unauthorized")
    # Every tenant route, public ones too: a token of another tenant, or no tenant at all, or an
    # operator token (not a tenant credential) is refused before the guard.
    if principal == OTHER_TENANT:
        return 403, "tenant-mismatch"
    if principal == PLATFORM_OPERATOR:
        return 401, "invalid-token"
    if principal == NO_TENANT:
        return None if access.kind == "entry" else (400, "tenant-required")
    if access.kind in ("public", "entry"):
        return None
    if principal == ANONYMOUS:
        return 401, "authentication-required"
    if access.kind == "member":
        return None
    assert access.permission is not None
    granted = {"owner", *kernel.identity.authorizer.permissions[access.permission].roles}
    return None if principal in granted else (403, "forbidden")


async def websocket_handshake(app: Any, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """Open a WebSocket on the ASGI app: its ``websocket.close`` if it refused the handshake (accepted
    and closed at once, before reading from the client, so a browser sees the close code), else its
    ``websocket.accept``."""
    sent: list[dict[str, Any]] = []
    #: How many messages the app had sent when it first waited for the client after the handshake.
    sent_before_reading: int | None = None
    answered = asyncio.Event()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", app.state.kernel.settings.base_domain.encode())]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected, sent_before_reading
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        if sent_before_reading is None:
            sent_before_reading = len(sent)
        await answered.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        answered.set()

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert sent, f"WS {path}: the app sent nothing"
    handshake = sent if sent_before_reading is None else sent[:sent_before_reading]
    return next((m for m in handshake if m["type"] == "websocket.close"), sent[0])


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_route_matrix(principal: str, cast: Cast, inopsio_app: Any, client: Any, kernel: Any) -> None:
    failures: list[str] = []
    for method, path, handler in app_routes(inopsio_app):
        # A route in no table or rule fails the test above; here it is held to what it declares.
        access = ROUTES.get((method, path)) or rule_for(method, path, handler) or declared_access(handler)
        headers = await _headers(client, cast, principal, method, path)
        if method == "WS":
            first = await websocket_handshake(inopsio_app, path, headers)
            refusal = _refusal(access, principal, kernel)
            expected = "websocket.accept" if refusal is None else f"close {4000 + refusal[0]}"
            got = first["type"] if first["type"] == "websocket.accept" else f"close {first.get('code')}"
            if got != expected:
                failures.append(f"WS {path} as {principal} ({access}): expected {expected}, got {got} {first}")
            continue
        body = {} if method in ("POST", "PUT", "PATCH", "DELETE") else None
        response = await client.request(method, concrete(path), json=body, headers=headers)
        refusal = _refusal(access, principal, kernel)
        is_problem = response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE)
        problem = response.json() if is_problem and response.content else {}
        got = f"{response.status_code} {problem.get('type', '')} {problem.get('detail', '')}".strip()
        what = f"{method} {path} as {principal} ({access}):"
        if response.status_code >= 500:
            failures.append(f"{what} server error {got}")
        elif refusal is None:
            if (
                response.status_code in (401, 403)
                or problem.get("type", "").removeprefix("urn:inopsio:problem:") in GUARD_REFUSALS
            ):
                failures.append(f"{what} expected to be let through, got {got}")
        else:
            status, code = refusal
            if response.status_code != status or problem.get("type") != f"urn:inopsio:problem:{code}":
                failures.append(f"{what} expected {status} {code}, got {got}")
            elif code == "forbidden" and problem.get("permission") != getattr(access, "permission", None):
                failures.append(f"{what} the problem should name {access}, got {problem}")
        if response.status_code >= 400 and method != "HEAD" and not problem and not path.startswith("/schema"):
            failures.append(f"{what} {response.status_code} without a problem document: {response.text[:200]}")
    assert not failures, "\n".join(failures)
