"""The kernel's real-time feature: the WebSocket route and the per-process hub, through the plugin hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inopsio import hookimpl
from inopsio.identity.rbac import Permission
from inopsio.realtime.controllers import CONNECT_PERMISSION, realtime_socket
from inopsio.realtime.hub import RealtimeHub
from inopsio.realtime.topics import TopicPolicy

if TYPE_CHECKING:
    from inopsio.kernel import Kernel


@hookimpl
def register_routes(register: Any) -> None:
    register(realtime_socket)


@hookimpl
def register_permissions(register: Any) -> None:
    register(
        Permission(
            name=CONNECT_PERMISSION,
            description="Open the real-time WebSocket (each topic still needs its module's permission)",
            roles=("admin", "manager", "member", "viewer"),
        )
    )


@hookimpl
async def on_startup(kernel: Kernel) -> None:
    policy = TopicPolicy(kernel.identity.authorizer, kernel.events.types)
    kernel.realtime = RealtimeHub(
        kernel.redis, kernel.settings.redis_namespace, policy, kernel.tenants.directory.get_by_id
    )
    await kernel.realtime.start()


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    if kernel.realtime is not None:
        await kernel.realtime.stop()
