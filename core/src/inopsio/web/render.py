"""Rendering pages inside the shell: ``page(request, "crm/leads.html", {...})``.

A page template extends ``shell/layout.html``; ``page`` gives it the request's tenant, the signed-in
user, their tenants (for the switcher), the menu their permissions allow, the CSRF token for htmx
and the flash messages waiting for them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

from litestar import Request, Response
from litestar.datastructures import Cookie
from sqlalchemy import select

from inopsio.identity.principal import principal_of
from inopsio.tenancy.resolution import STATE_KEY

if TYPE_CHECKING:
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

FLASH_COOKIE = "inopsio_flash"
VIEWER_KEY = "inopsio_viewer"
PAGE_OPT = "page"


class Viewer:
    """The signed-in person looking at a page (``None`` on public pages)."""

    def __init__(
        self, user_id: UUID, email: str, name: str, totp: bool, tenants: list[dict[str, Any]], permissions: set[str]
    ) -> None:
        self.user_id = user_id
        self.email = email
        self.name = name or email
        self.totp = totp
        self.tenants = tenants
        self.permissions = permissions

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def initials(self) -> str:
        parts = [p for p in self.name.replace("@", " ").split() if p]
        return "".join(p[0] for p in parts[:2]).upper() or "?"


async def viewer_of(request: Request[Any, Any, Any]) -> Viewer | None:
    """The signed-in user of this request with their tenants and permissions (one query, kept per request)."""
    state = request.scope.setdefault("state", {})
    if VIEWER_KEY in state:
        return state[VIEWER_KEY]  # type: ignore[no-any-return]
    principal = principal_of(request.scope)
    tenant: TenantInfo | None = state.get(STATE_KEY)
    viewer = None
    if principal is not None and principal.user_id is not None and tenant is not None:
        from inopsio.identity.models import Membership, User
        from inopsio.tenancy.models import Tenant

        kernel: Kernel = request.app.state.kernel
        async with kernel.db.session(tenant.id, user_id=principal.user_id) as session:
            user = await session.get(User, principal.user_id)
            rows = (
                await session.execute(
                    select(Tenant.slug, Tenant.name)
                    .join(Membership, Membership.tenant_id == Tenant.id)
                    .where(Membership.user_id == principal.user_id, Tenant.status == "active")
                    .execution_options(include_all_tenants=True)
                    .order_by(Tenant.name)
                )
            ).all()
        if user is not None:
            authorizer = kernel.identity.authorizer
            # What the menu and cards offer: for a page fetched with an API key, what the key may do
            # now (its list and its owner's rights), not everything its owner may do.
            permissions = {p for p in authorizer.permissions if authorizer.allows(principal, tenant.id, p)}
            viewer = Viewer(
                user.id,
                user.email,
                user.name,
                user.totp_enabled_at is not None,
                [{"slug": slug, "name": name, "current": slug == tenant.slug} for slug, name in rows],
                permissions,
            )
    state[VIEWER_KEY] = viewer
    return viewer


def tenant_host_url(request: Request[Any, Any, Any], slug: str, path: str = "/") -> str:
    """The address of ``path`` on tenant ``slug``'s own host (``<slug>.<base domain>[:port]``), with
    this request's scheme and port: for redirects between the platform's and a tenant's host in the
    browser that is already here. Links that leave the app (mail, callbacks) use
    :func:`inopsio.tenancy.addresses.tenant_url`, from ``public_url``."""
    kernel: Kernel = request.app.state.kernel
    port = request.url.port
    default = {"http": 80, "https": 443}.get(request.url.scheme)
    netloc = f"{slug}.{kernel.settings.base_domain}" + (f":{port}" if port and port != default else "")
    return f"{request.url.scheme}://{netloc}{path}"


def base_url(request: Request[Any, Any, Any], path: str = "/") -> str:
    """The address of ``path`` on the platform's own host (sign-up, operator console)."""
    kernel: Kernel = request.app.state.kernel
    port = request.url.port
    default = {"http": 80, "https": 443}.get(request.url.scheme)
    netloc = kernel.settings.base_domain + (f":{port}" if port and port != default else "")
    return f"{request.url.scheme}://{netloc}{path}"


def _flashes(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    return [
        {"kind": str(i.get("kind", "info")), "text": str(i.get("text", ""))[:300]} for i in items if isinstance(i, dict)
    ][:5]


def flash_cookie(text: str, kind: str = "success") -> Cookie:
    """A message for the next page the browser shows (a short-lived cookie, read once)."""
    return Cookie(
        key=FLASH_COOKIE,
        value=json.dumps([{"kind": kind, "text": text}], separators=(",", ":")),
        max_age=60,
        path="/",
        httponly=True,
        samesite="lax",
    )


async def context_of(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What every shell template gets."""
    kernel: Kernel = request.app.state.kernel
    tenant: TenantInfo | None = request.scope.get("state", {}).get(STATE_KEY)
    viewer = await viewer_of(request)
    principal = principal_of(request.scope)
    csrf = None
    if principal is not None and principal.session_id is not None and principal.kind == "user":
        csrf = kernel.identity.web_sessions.csrf_token(principal.session_id)
    permissions = viewer.permissions if viewer else set()
    menu = kernel.web.menu_for(tenant.module_enabled, permissions) if tenant and viewer else []
    settings = tenant.settings if tenant else None
    return {
        "request": request,
        "path": request.url.path,
        "tenant": tenant,
        "viewer": viewer,
        "menu": menu,
        "csrf_token": csrf,
        "flashes": _flashes(request),
        "locale": settings.locale if settings else "en",
        "timezone": settings.timezone if settings else "UTC",
        "currency": settings.currency if settings else "EUR",
        "brand_name": (
            settings.display_name if settings and settings.display_name else (tenant.name if tenant else "Inopsio")
        ),
        "brand_color": (settings.branding.color if settings and settings.branding.color else "#1f5fbf"),
        "brand_logo": settings.branding.shown_logo_url if settings else None,
        "platform_url": base_url(request),
        "login_url": "/login?next=" + quote(request.url.path),
    }


async def page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """Render ``template`` (a full page extending ``shell/layout.html``) for this request."""
    kernel: Kernel = request.app.state.kernel
    values = await context_of(request)
    values.update(context or {})
    html = kernel.web.render(template, values)
    response = Response(
        html,
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )
    if values["flashes"]:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


async def fragment(
    request: Request[Any, Any, Any], template: str, context: dict[str, Any] | None = None
) -> Response[str]:
    """Render a partial (an htmx swap target or a dashboard card body) with the same context."""
    kernel: Kernel = request.app.state.kernel
    values = await context_of(request)
    values.update(context or {})
    return Response(
        kernel.web.render(template, values),
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


def redirect(location: str, *, flash: str | None = None, kind: str = "success") -> Response[None]:
    response: Response[None] = Response(None, status_code=303, headers={"Location": location})
    if flash:
        response.set_cookie(flash_cookie(flash, kind))
    return response


def wants_html(scope: Any) -> bool:
    """A browser asking for a page (not an API client, not an htmx partial)."""
    path = str(scope.get("path", ""))
    if path.startswith("/api/") or path.startswith("/static/") or path.startswith("/health"):
        return False
    accept = b""
    hx = False
    for name, value in scope.get("headers", []):
        if name == b"accept":
            accept = value
        elif name == b"hx-request":
            hx = True
    return b"text/html" in accept and not hx
