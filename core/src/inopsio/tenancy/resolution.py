"""Which tenant a request is for: its ``Host`` subdomain, an ``X-Tenant`` header, or its token's claim.

Every source given must name the same tenant, or the request is refused. A suspended tenant gets a
403 problem document on every request; its data stays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from inopsio.errors import PROBLEM_MEDIA_TYPE, Problem, problem_bytes

if TYPE_CHECKING:
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

#: Route ``opt`` key: ``"none"`` for routes outside any tenant (health, platform API).
TENANCY_OPT = "tenancy"
STATE_KEY = "inopsio_tenant"


def slug_from_host(host: str, base_domain: str) -> str | None:
    """``acme.example.com`` under base domain ``example.com`` -> ``acme``; anything else -> None."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    suffix = "." + base_domain.lower()
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    if not label or "." in label:
        return None
    return label


def check_claim(tenant: TenantInfo | None, claimed_tenant_id: str | None) -> None:
    """Refuse a token whose tenant claim differs from the tenant the request was resolved to."""
    if claimed_tenant_id is not None and tenant is not None and str(tenant.id) != claimed_tenant_id:
        raise Problem(403, "tenant-mismatch", "The credentials belong to another tenant than this address.")


class TenantResolutionMiddleware:
    """ASGI middleware run for each routed request: resolves and checks the tenant.

    Requests are counted against quotas by the authentication step that follows, in the same
    Redis round trip as the caller's own rate limit.
    """

    def __init__(self, app: ASGIApp, kernel: Kernel) -> None:
        self.app = app
        self.kernel = kernel
        self.base_domain = kernel.settings.base_domain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type: str = scope["type"]
        if scope_type not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        handler = scope.get("route_handler")
        if handler is not None and handler.opt.get(TENANCY_OPT) == "none":
            await self.app(scope, receive, send)
            return
        host = header = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"x-tenant":
                header = value.decode("latin-1").strip().lower()
        from_host = slug_from_host(host, self.base_domain) if host else None
        if from_host and header and from_host != header:
            await self.refuse(
                scope,
                send,
                400,
                "tenant-mismatch",
                f"The address is for tenant {from_host!r} but X-Tenant names {header!r}.",
            )
            return
        slug = from_host or header
        if slug:
            tenant = await self.kernel.tenants.directory.get(slug)
            if tenant is None:
                await self.refuse(scope, send, 404, "tenant-not-found", f"There is no tenant {slug!r}.")
                return
            if not tenant.is_active:
                await self.refuse(
                    scope,
                    send,
                    403,
                    "tenant-suspended",
                    f"The tenant {tenant.slug!r} is suspended. Its data is kept; contact the platform operator "
                    "to have it resumed.",
                )
                return
            scope.setdefault("state", {})[STATE_KEY] = tenant
        await self.app(scope, receive, send)

    @staticmethod
    async def refuse(
        scope: Scope,
        send: Send,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if str(scope["type"]) == "websocket":
            await send({"type": "websocket.close", "code": 4000 + status, "reason": detail[:120]})
            return
        from inopsio.web.render import wants_html

        body, media_type = b"", PROBLEM_MEDIA_TYPE
        if wants_html(scope) and "app" in scope:
            from inopsio.web.errors import error_html

            try:
                body, media_type = error_html(scope, status, code, detail).encode(), "text/html; charset=utf-8"
            except Exception:
                body = b""
        if not body:
            body = problem_bytes(status, code, detail, scope.get("path"), **extra)
        raw_headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send(HTTPResponseStartEvent(type="http.response.start", status=status, headers=raw_headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
