"""Who may read an event: the one rule the activity feed, the WebSocket, webhooks and workflow triggers share.

Every declared event type names the permission a reader needs (or :data:`ANY_MEMBER`) and may add a
row-level rule on the event's data (:class:`~inopsio.events.schemas.EventType`). :func:`readable`
applies both; ``kernel.events.readable_by(reader, event_type, data)`` is the same with the type
looked up. A reader is one of the small objects below, built once per socket, request or
subscription: each question it answers is a lookup in the authorizer's cache (dropped on every RBAC
change), so the check stays cheap in the WebSocket fan-out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from inopsio.events.schemas import ANY_MEMBER, EventReader, EventType

if TYPE_CHECKING:
    from inopsio.identity.principal import Principal
    from inopsio.identity.rbac import Authorizer

log = logging.getLogger("inopsio.events")

#: The role a webhook subscription set up before subscriptions had an owner is read as.
LEGACY_OWNER_ROLE = "admin"

EventData = Mapping[str, Any]


def readable(declared: EventType | None, reader: EventReader, data: EventData | Callable[[], EventData]) -> bool:
    """Whether ``reader`` may read an event of type ``declared`` carrying ``data``.

    ``data`` may be a function returning it, called only when a row-level rule needs it (the hub
    decodes an event's data once, for the first socket that asks). An event whose type no loaded
    plugin declares (its plugin was uninstalled) is read by nobody: nothing says who may. A rule
    that raises counts as "not visible".
    """
    if declared is None or not reader.allowed(declared.permission):
        return False
    rule = declared.visible
    if rule is None:
        return True
    try:
        return bool(rule(data() if callable(data) else data, reader))
    except Exception:
        log.warning("row-level rule of %s failed; the event is not shown", declared.name, exc_info=True)
        return False


class PrincipalReader:
    """A request's principal: a user with their role's grants, or an API key (its list ∩ its creator's grants)."""

    __slots__ = ("_authorizer", "_principal", "_tenant_id", "user_id")

    def __init__(self, authorizer: Authorizer, principal: Principal, tenant_id: UUID) -> None:
        self._authorizer = authorizer
        self._principal = principal
        self._tenant_id = tenant_id
        self.user_id = principal.user_id

    def allowed(self, permission: str) -> bool:
        if permission == ANY_MEMBER:
            # An API key reads as its creator, who must still belong to the tenant.
            user_id = self.user_id
            return user_id is not None and self._authorizer.role_of(user_id, self._tenant_id) is not None
        return self._authorizer.allows(self._principal, self._tenant_id, permission)


class UserReader:
    """A user by id, with their current grants: the owner of a webhook subscription or a workflow."""

    __slots__ = ("_authorizer", "_tenant_id", "user_id")

    def __init__(self, authorizer: Authorizer, user_id: UUID, tenant_id: UUID) -> None:
        self._authorizer = authorizer
        self._tenant_id = tenant_id
        self.user_id: UUID | None = user_id

    def allowed(self, permission: str) -> bool:
        user_id = self.user_id
        assert user_id is not None
        if permission == ANY_MEMBER:
            return self._authorizer.role_of(user_id, self._tenant_id) is not None
        return self._authorizer.allowed(user_id, self._tenant_id, permission)


class RoleReader:
    """Whatever a role grants in a tenant, for no user in particular (a subscription without an owner)."""

    __slots__ = ("_authorizer", "_grants", "_role", "_tenant_id", "user_id")

    def __init__(self, authorizer: Authorizer, role: str, tenant_id: UUID) -> None:
        self._authorizer = authorizer
        self._role = role
        self._tenant_id = tenant_id
        self._grants: frozenset[str] | None = None
        self.user_id: UUID | None = None

    def allowed(self, permission: str) -> bool:
        if permission == ANY_MEMBER:
            return True
        if self._grants is None:
            # Computed on first use: a reader lives for one batch of deliveries, so RBAC changes reach it.
            self._grants = frozenset(self._authorizer.role_permissions(self._role, self._tenant_id))
        return permission in self._grants


def owner_reader(authorizer: Authorizer, owner_id: UUID | None, tenant_id: UUID) -> EventReader:
    """The reader a webhook subscription delivers as: its owner now, or the built-in admin role for
    one set up before subscriptions had owners (``owner_id`` is ``None``)."""
    if owner_id is None:
        return RoleReader(authorizer, LEGACY_OWNER_ROLE, tenant_id)
    return UserReader(authorizer, owner_id, tenant_id)
