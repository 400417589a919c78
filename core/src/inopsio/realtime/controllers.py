"""``/api/v1/ws``: the tenant's live events over a WebSocket (protocol in :mod:`inopsio.realtime.connection`).

The handshake is authenticated like any API request, by the kernel's middleware and access guard:
a bearer access token or API key in ``Authorization`` (or, for clients that cannot set headers, in
the ``access_token`` query parameter), or a browser's session cookie from a page of the same
origin. A handshake without valid credentials for the tenant is refused before it is accepted.
The route needs ``kernel.realtime.connect``, which every built-in role holds; an API key must list
it, like any permission it uses.
"""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from inopsio.identity.principal import principal_of
from inopsio.realtime.connection import CLOSE_UNAVAILABLE, RealtimeConnection
from inopsio.tenancy.resolution import STATE_KEY

CONNECT_PERMISSION = "kernel.realtime.connect"


@websocket("/api/v1/ws", opt={"permission": CONNECT_PERMISSION})
async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Follow topics of the tenant's events; catch up on missed ones with ``since``."""
    kernel = socket.app.state.kernel
    tenant = socket.scope["state"][STATE_KEY]
    principal = principal_of(socket.scope)
    # The access guard admitted the handshake, so both are this tenant's; checked again on purpose.
    if principal is None or principal.tenant_id != tenant.id:
        await socket.close(code=4401, reason="authentication required")
        return
    await socket.accept()
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
