"""What a client may subscribe to: topic syntax, matching, and the RBAC rule for each topic.

A topic is an event-type pattern inside the connection's own tenant: ``*`` (every event),
``crm.deal.stage_changed`` (one type) or ``crm.deal.*`` / ``crm.*`` (a prefix). Topics never name a
tenant or a Redis channel: the server only ever reads the connection's tenant's channel.

The rule, simple on purpose: events of module ``M`` may be followed by whoever holds at least one
permission of ``M`` (``M.<resource>.<action>``), because each such permission already shows some of
M's data; ``kernel.events.read`` (the activity feed) covers every module, and is required for
``*`` and for ``kernel.*`` topics. An API key needs such a permission listed on the key itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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

    def __init__(self, authorizer: Authorizer, event_types: Iterable[str]) -> None:
        self.authorizer = authorizer
        self.event_types = sorted(event_types)

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
        return None

    def allowed(self, topic: str, principal: Principal, tenant: TenantInfo) -> bool:
        if topic in NOTIFICATION_TOPICS and principal.kind == "user":
            return True  # every member gets their own alerts (the socket filters by recipient)
        module = topic_module(topic)
        candidates = [FEED_PERMISSION]
        if module != KERNEL_MODULE:
            candidates += [p for p in self.authorizer.permissions if p.startswith(module + ".")]
        if principal.kind == "api_key":
            held = principal.permissions or frozenset()
            return any(p in held for p in candidates)
        if principal.user_id is None:
            return False
        return any(self.authorizer.allowed(principal.user_id, tenant.id, p) for p in candidates)
