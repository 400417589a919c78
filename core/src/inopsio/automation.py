"""Workflow node types that plugins contribute, for the workflow module (and any other runner).

The kernel only keeps the catalogue: ``GET /api/v1/automation/node-types`` lists every node type of
the tenant's enabled plugins with its configuration schema. The workflow plugin runs them; a plugin
that declares a node type never imports the workflow plugin, nor the other way round.

A trigger starts its workflow only for events the workflow's owner may read at that moment
(:func:`trigger_may_fire`, the same rule as the activity feed, the WebSocket and webhooks), so a
workflow cannot be used to see what its author may not.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

import msgspec

from inopsio.events.schemas import DomainEvent
from inopsio.events.visibility import UserReader

NODE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")
NodeKind = Literal["trigger", "action", "condition"]


class NodeContext(msgspec.Struct, kw_only=True):
    """What an executor gets besides its configuration and input.

    ``session`` is a transaction in ``tenant_id`` (its effects commit with the step that ran the
    node); ``kernel`` gives the rest of the platform (events, jobs, mail). ``actor_id`` is the user
    on whose behalf the workflow runs, when there is one.
    """

    kernel: Any
    tenant_id: UUID
    session: Any
    actor_id: UUID | None = None


#: ``await execute(ctx, config, data)``: ``config`` is an instance of the node's config Struct,
#: ``data`` the item flowing into the node (a dict); returns the item flowing out (a dict). A
#: condition returns ``{"result": bool, ...}``. Raise ``ValueError`` for bad input the user can fix.
Executor = Callable[[NodeContext, Any, dict[str, Any]], Awaitable[dict[str, Any]]]


class NodeType(msgspec.Struct, frozen=True, kw_only=True):
    """One node type: a trigger (started by an event), an action or a condition.

    ``name`` is ``<plugin>.<thing>.<verb>`` (``crm.lead.assign``). ``config`` is the msgspec Struct
    of its settings (its JSON Schema drives the editor's form). A trigger names the event type
    that starts it in ``event``, and fires only for events its workflow's owner may read
    (:func:`trigger_may_fire`); actions and conditions have an ``execute``.
    """

    name: str
    kind: NodeKind
    title: str
    description: str
    config: type[msgspec.Struct] | None = None
    event: str | None = None
    execute: Executor | None = None

    def __post_init__(self) -> None:
        if not NODE_NAME.match(self.name):
            raise ValueError(f"node type {self.name!r} must be named <plugin>.<thing>.<verb>")
        if self.kind == "trigger" and not self.event:
            raise ValueError(f"trigger node {self.name!r} must name the event type that starts it")
        if self.kind != "trigger" and self.execute is None:
            raise ValueError(f"{self.kind} node {self.name!r} needs an execute function")

    def describe(self) -> dict[str, Any]:
        schema = msgspec.json.schema(self.config) if self.config is not None else {"type": "object"}
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "event": self.event,
            "config_schema": schema,
        }


def trigger_may_fire(kernel: Any, owner_id: UUID | None, event: DomainEvent) -> bool:
    """Whether ``event`` may start a workflow owned by ``owner_id`` (the user who last saved it).

    The owner must be allowed to read the event now: its type's permission and row-level rule (a
    member's workflow never fires on another member's private lead, nor on audit entries), with the
    owner's current role. A workflow without an owner (their account is gone) fires on nothing.
    A workflow runner calls this before starting a run, for every trigger an event matches.
    """
    if owner_id is None:
        return False
    reader = UserReader(kernel.identity.authorizer, owner_id, event.tenant_id)
    return bool(kernel.events.readable_by(reader, event.type, event.data))


def parse_config(node: NodeType, raw: dict[str, Any]) -> Any:
    """The node's config Struct from plain data; ``ValueError`` naming the bad field otherwise."""
    if node.config is None:
        return raw
    try:
        return msgspec.convert(raw, node.config)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{node.name}: {exc}") from exc


class NodeTypeOut(msgspec.Struct, kw_only=True):
    name: str
    module: str
    kind: str
    title: str
    description: str
    event: str | None
    config_schema: dict[str, Any]
