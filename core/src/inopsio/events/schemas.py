"""What an event is, what a plugin declares about its event types, and what the API shows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened in one tenant. ``id`` is a UUIDv7: ordered by time, unique."""

    id: UUID
    type: str
    tenant_id: UUID
    actor: str | None
    occurred_at: dt.datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class EventType:
    """A declared event type: ``crm.deal.stage_changed`` and the Struct its ``data`` follows."""

    name: str
    description: str
    payload: type[msgspec.Struct] | None = None

    def __post_init__(self) -> None:
        if not EVENT_TYPE_RE.match(self.name):
            raise ValueError(f"event type {self.name!r} must be named <plugin>.<thing>.<happened>")

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
    #: Pass as ``after`` for the next page (the last event id seen).
    next_after: UUID | None = None


class CatalogEntry(msgspec.Struct, kw_only=True):
    type: str
    module: str
    description: str
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
