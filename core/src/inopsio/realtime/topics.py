"""What a client may subscribe to: topic syntax, matching, and the RBAC rule for each topic.

A topic is an event-type pattern inside the connection's own tenant: ``*`` (every event),
``crm.deal.stage_changed`` (one type) or ``crm.deal.*`` / ``crm.*`` (a prefix). Topics never name a
tenant or a Redis channel: the server only ever reads the connection's tenant's channel.

The rule, simple on purpose: events of module ``M`` may be followed by whoever holds at least one
permission of ``M`` (``M.<resource>.<action>``), because each such permission already shows some of
M's data; ``kernel.events.read`` (the activity feed) covers every module, and is required for
``*`` and for ``kernel.*`` topics. A topic must also match at least one event type the principal may
read (its declared permission, :mod:`inopsio.events.visibility`); which events of a followed topic
reach the socket is decided event by event, by the same rule. An API key holds a permission when the
key lists it and its creator holds it now (``Authorizer.allows``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from inopsio.events.schemas import EventType
from inopsio.events.visibility import PrincipalReader
from inopsio.identity.principal import Principal
from inopsio.identity.rbac import Authorizer
from inopsio.notifications import NOTIFICATION_TOPICS
from inopsio.tenancy.schemas import TenantInfo

TOPIC_RE = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,5}(\.\*)?)$")
MAX_TOPIC_LENGTH = 150
FEED_PERMISSION = "kernel.events.read"
KERNEL_MODULE = "kernel"


def topic_matches(topic: str, event_type: str) -> bool:
    if topic == "*":
        return True
    if topic.endswith(".*"):
        return event_type.startswith(topic[:-1])
    return event_type == topic


def topic_module(topic: str) -> str:
    return KERNEL_MODULE if topic == "*" else topic.split(".", 1)[0]


@dataclass(frozen=True)
class TopicRefusal:
    topic: str
    code: str
    detail: str


class TopicPolicy:
    """Checks topics against the declared event types, the tenant's modules and RBAC."""

    def __init__(self, authorizer: Authorizer, event_types: Mapping[str, EventType]) -> None:
        self.authorizer = authorizer
        self.declared = dict(event_types)
        self.event_types = sorted(self.declared)

    def check(self, topic: object, principal: Principal, tenant: TenantInfo) -> TopicRefusal | None:
        """``None`` when ``principal`` may follow ``topic`` in ``tenant``, else why not."""
        if not isinstance(topic, str) or len(topic) > MAX_TOPIC_LENGTH or not TOPIC_RE.match(topic):
            shown = str(topic)[:MAX_TOPIC_LENGTH]
            return TopicRefusal(
                shown,
                "invalid-topic",
                "A topic is an event type of this tenant ('crm.deal.stage_changed'), a prefix ending in "
                "'.*' ('crm.deal.*'), or '*'.",
            )
        if not any(topic_matches(topic, t) for t in self.event_types):
            return TopicRefusal(topic, "unknown-topic", "No event type declared by the loaded plugins matches it.")
        module = topic_module(topic)
        if module != KERNEL_MODULE and not tenant.module_enabled(module):
            return TopicRefusal(topic, "module-disabled", f"The module {module!r} is switched off in this tenant.")
        if not self.allowed(topic, principal, tenant):
            needed = FEED_PERMISSION if module == KERNEL_MODULE else f"a permission of {module!r} or {FEED_PERMISSION}"
            return TopicRefusal(topic, "forbidden", f"Following this topic requires {needed}.")
        if not self.reads_any(topic, principal, tenant):
            return TopicRefusal(
                topic,
                "forbidden",
                "You may not read any event type this topic matches (see GET /api/v1/events/catalog).",
            )
        return None

    def allowed(self, topic: str, principal: Principal, tenant: TenantInfo) -> bool:
        """The module rule above (see the module doc)."""
        if topic in NOTIFICATION_TOPICS and principal.kind == "user":
            return True  # every member gets their own alerts (the notifications' rule picks the recipient)
        module = topic_module(topic)
        candidates = [FEED_PERMISSION]
        if module != KERNEL_MODULE:
            candidates += [p for p in self.authorizer.permissions if p.startswith(module + ".")]
        return any(self.authorizer.allows(principal, tenant.id, p) for p in candidates)

    def reads_any(self, topic: str, principal: Principal, tenant: TenantInfo) -> bool:
        """Whether ``principal`` holds the permission of at least one event type ``topic`` matches."""
        reader = PrincipalReader(self.authorizer, principal, tenant.id)
        return any(
            reader.allowed(declared.permission)
            for name, declared in self.declared.items()
            if topic_matches(topic, name)
        )
