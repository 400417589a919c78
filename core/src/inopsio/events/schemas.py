"""What an event is, what a plugin declares about its event types, and what the API shows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import msgspec

from inopsio.identity.rbac import PERMISSION_RE

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")
#: An event type's ``permission`` meaning "any member of the tenant" (the kernel's notifications,
#: whose row-level rule then picks the recipient). Never a permission name, so it cannot clash.
ANY_MEMBER = "any-member"


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened in one tenant. ``id`` is a UUIDv7: ordered by time, unique."""

    id: UUID
    type: str
    tenant_id: UUID
    actor: str | None
    occurred_at: dt.datetime
    data: dict[str, Any]


class EventReader(Protocol):
    """Whoever reads an event (a request's user or API key, a webhook's or a workflow's owner).

    ``allowed(permission)`` answers from the process's RBAC cache; ``allowed(ANY_MEMBER)`` is
    whether the reader is a member of the tenant at all.
    """

    @property
    def user_id(self) -> UUID | None: ...

    def allowed(self, permission: str) -> bool: ...


#: ``visible(data, reader) -> bool``: a row-level rule on one event's ``data`` (decoded JSON: ids are
#: strings). Pure and quick, no database access: it runs for every event and every open socket.
#: Data it does not recognise (an event stored before a field existed) must give ``False``.
VisibilityRule = Callable[[Mapping[str, Any], EventReader], bool]


@dataclass(frozen=True, kw_only=True)
class EventType:
    """A declared event type: ``crm.deal.stage_changed``, the Struct its ``data`` follows, and who may read it.

    ``permission`` is the declared permission a reader needs (``crm.deals.read``), or
    :data:`ANY_MEMBER`; ``visible`` an optional row-level rule on top of it (see
    :data:`VisibilityRule`), for records some holders of the permission may not see.
    """

    name: str
    description: str
    permission: str
    payload: type[msgspec.Struct] | None = None
    visible: VisibilityRule | None = None

    def __post_init__(self) -> None:
        if not EVENT_TYPE_RE.match(self.name):
            raise ValueError(f"event type {self.name!r} must be named <plugin>.<thing>.<happened>")
        if not isinstance(self.permission, str) or not (
            self.permission == ANY_MEMBER or PERMISSION_RE.match(self.permission)
        ):
            raise ValueError(
                f"event type {self.name!r} must declare who may read it: permission=<a declared permission "
                f"name> or ANY_MEMBER, not {self.permission!r}"
            )
        if self.visible is not None and not callable(self.visible):
            raise ValueError(f"event type {self.name!r}: visible must be a function (data, reader) -> bool")

    @property
    def rule_summary(self) -> str | None:
        """The first line of the row-level rule's docstring (what the catalog says about it)."""
        if self.visible is None:
            return None
        doc = (self.visible.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else "a row-level rule"

    def json_schema(self) -> dict[str, Any]:
        if self.payload is None:
            return {"type": "object"}
        return msgspec.json.schema(self.payload)


EventHandlerFunction = Callable[[DomainEvent, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class EventHandler:
    """``function(event, ctx)`` for events whose type matches ``pattern`` (exact, or ``crm.deal.*``)."""

    name: str
    pattern: str
    function: EventHandlerFunction
    plugin: str
    max_attempts: int = 8

    def matches(self, event_type: str) -> bool:
        if self.pattern == "*":
            return True
        if self.pattern.endswith(".*"):
            return event_type.startswith(self.pattern[:-1])
        return event_type == self.pattern


class EventOut(msgspec.Struct, kw_only=True):
    id: UUID
    type: str
    actor: str | None
    occurred_at: dt.datetime
    data: dict[str, Any]


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    #: Pass as ``after`` for the next page; ``null`` once the log is read to its end. A page may hold
    #: fewer than ``limit`` events while this is set (many events the reader may not see were passed).
    next_after: UUID | None = None


class CatalogEntry(msgspec.Struct, kw_only=True):
    type: str
    module: str
    description: str
    #: The permission a reader needs (``any-member``: every member of the tenant).
    permission: str
    #: Whether a row-level rule also decides, event by event, who sees it (e.g. private leads).
    row_level: bool
    schema: dict[str, Any]


class DeliveryOut(msgspec.Struct, kw_only=True):
    event_id: UUID
    event_type: str
    handler: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    updated_at: dt.datetime
