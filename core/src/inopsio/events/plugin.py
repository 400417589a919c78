"""The kernel's event feature: its tables, routes and permissions, through the plugin hooks."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.events.controllers import EventsController
from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.identity.rbac import Permission


@hookimpl
def register_models(register: Any) -> None:
    register(EventRecord)
    register(PendingEvent)
    register(Delivery)


@hookimpl
def register_routes(register: Any) -> None:
    register(EventsController)


@hookimpl
def register_permissions(register: Any) -> None:
    register(
        Permission(
            name="kernel.events.read",
            description="Read the tenant's activity feed",
            roles=("admin", "manager", "member"),
        )
    )
    register(
        Permission(name="kernel.events.admin", description="See and replay failed event deliveries", roles=("admin",))
    )
