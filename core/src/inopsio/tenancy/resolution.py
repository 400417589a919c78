"""Which tenant a request is for: its ``Host`` subdomain, an ``X-Tenant`` header, or its token's claim.

Every source given must name the same tenant, each at most once, or the request is refused. A
suspended tenant gets a 403 problem document on every request; its data stays. A refused WebSocket
handshake is accepted and closed with ``4000 + status`` instead (see :func:`refuse_websocket`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
    WebSocketAcceptEvent,
    WebSocketCloseEvent,
)

from inopsio.errors import PROBLEM_MEDIA_TYPE, Problem, problem_bytes

if TYPE_CHECKING:
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

#: Route ``opt`` key: ``"none"`` for routes outside any tenant (health, platform API).
TENANCY_OPT = "tenancy"
log = logging.getLogger("inopsio.tenancy")
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


#: Bytes a close frame's reason may hold (RFC 6455: 125 bytes of payload, two of them the code).
MAX_CLOSE_REASON = 123


def close_code(status: int) -> int:
    """The WebSocket close code for a refusal with HTTP ``status``: ``4000 + status`` (4401, 4403, ...)."""
    return 4000 + status


async def refuse_websocket(receive: Receive, send: Send, status: int, reason: str) -> None:
    """Refuse a WebSocket handshake so that a browser can tell why.

    A handshake closed before it is accepted reaches the client as a bare HTTP 403 whatever the
    cause, and a browser's ``WebSocket`` cannot read that status at all. So the handshake is
    accepted and the socket closed at once with :func:`close_code` and the reason.
    """
    message = await receive()
    if message["type"] != "websocket.connect":  # the client left during the handshake
        return
    await send(WebSocketAcceptEvent(type="websocket.accept", subprotocol=None, headers=[]))
    text = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
    await send(WebSocketCloseEvent(type="websocket.close", code=close_code(status), reason=text))


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
        hosts: list[str] = []
        headers: list[str] = []
        for name, value in scope["headers"]:
            if name == b"host":
                hosts.append(value.decode("latin-1"))
            elif name == b"x-tenant":
                headers.append(value.decode("latin-1").strip().lower())
        # Two of either would be read differently by different layers (a proxy keeps the first, this
        # loop the last), so which tenant the request is for would depend on who asks: refused.
        for label, given in (("Host", hosts), ("X-Tenant", headers)):
            if len(given) > 1:
                await self.refuse(
                    scope,
                    receive,
                    send,
                    400,
                    "duplicate-header",
                    f"The request carries {len(given)} {label} headers; send exactly one.",
                )
                return
        host = hosts[0] if hosts else None
        header = headers[0] if headers else None
        from_host = slug_from_host(host, self.base_domain) if host else None
        if from_host and header and from_host != header:
            await self.refuse(
                scope,
                receive,
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
                await self.refuse(scope, receive, send, 404, "tenant-not-found", f"There is no tenant {slug!r}.")
                return
            if not tenant.is_active:
                await self.refuse(
                    scope,
                    receive,
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
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        """Answer with a problem document (an HTML error page to a browser); a WebSocket handshake is
        accepted and closed with ``4000 + status`` (see :func:`refuse_websocket`)."""
        if str(scope["type"]) == "websocket":
            await refuse_websocket(receive, send, status, detail)
            return
        if "app" in scope:
            # The render_error hook (the web feature: a page for a browser) may answer instead of the
            # problem document; this layer does not know about pages.
            request: Request[Any, Any, Any] = Request(scope, receive, send)
            try:
                rendered = scope["app"].state.kernel.plugins.hook.render_error(
                    request=request, status=status, code=code, detail=detail, members=extra
                )
            except Exception:
                log.exception("rendering the error page failed")
                rendered = None
            if rendered is not None:
                await rendered.to_asgi_response(app=None, request=request, headers=headers)(scope, receive, send)
                return
        body, media_type = problem_bytes(status, code, detail, scope.get("path"), **extra), PROBLEM_MEDIA_TYPE
        raw_headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send(HTTPResponseStartEvent(type="http.response.start", status=status, headers=raw_headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
