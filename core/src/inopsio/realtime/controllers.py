"""``/api/v1/ws``: the tenant's live events over a WebSocket (protocol in :mod:`inopsio.realtime.connection`).

The handshake is authenticated like any API request, by the kernel's middleware and access guard:
a bearer access token or API key in ``Authorization`` (or, for clients that cannot set headers, in
the ``access_token`` query parameter), or a browser's session cookie from a page of the same
origin. A handshake refused (no valid credentials for the tenant, no permission, unknown or
suspended tenant, rate limit) is accepted and closed at once with ``4000 + status`` and a reason,
so that a browser, which cannot read the status of a refused handshake, can tell why (the table
is in ``docs/events.md``).
The route needs ``kernel.realtime.connect``, which every built-in role holds; an API key must list
it, like any permission it uses.
"""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from inopsio.identity.principal import principal_of
from inopsio.realtime.connection import CLOSE_UNAVAILABLE, RealtimeConnection
from inopsio.tenancy.resolution import STATE_KEY, close_code

CONNECT_PERMISSION = "kernel.realtime.connect"


@websocket("/api/v1/ws", opt={"permission": CONNECT_PERMISSION})
async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Follow topics of the tenant's events; catch up on missed ones with ``since``."""
    kernel = socket.app.state.kernel
    tenant = socket.scope["state"][STATE_KEY]
    principal = principal_of(socket.scope)
    await socket.accept()
    # The access guard admitted the handshake, so both are this tenant's; checked again on purpose,
    # after accepting: a close before it would reach the browser as a bare HTTP 403.
    if principal is None or principal.tenant_id != tenant.id:
        await socket.close(code=close_code(401), reason="authentication required")
        return
    connection = RealtimeConnection(socket, kernel, tenant, principal)
    try:
        await kernel.realtime.attach(connection)
    except Exception:
        await socket.close(code=CLOSE_UNAVAILABLE, reason="real-time events are unavailable; retry later")
        return
    try:
        await connection.serve()
    finally:
        await kernel.realtime.detach(connection)
