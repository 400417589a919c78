"""What the webhooks API speaks, and the body every delivery POSTs."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec

WebhookUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
EventTypePattern = Annotated[str, msgspec.Meta(min_length=1, max_length=150)]
EventTypePatterns = Annotated[list[EventTypePattern], msgspec.Meta(min_length=1, max_length=100)]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: WebhookUrl
    #: Declared event types (``sample.note.created``), prefixes of them (``sample.note.*``) or ``*``.
    event_types: EventTypePatterns
    description: Description = ""
    enabled: bool = True


class SubscriptionPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A partial update: only the fields given change."""

    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypePatterns | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class SubscriptionOut(msgspec.Struct, kw_only=True):
    id: UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    #: Why the subscription switched itself off (the receiver answered 410 Gone), else null.
    disabled_reason: str | None
    #: Who set it up or last changed it: it delivers only the events this user may read at the time
    #: (null: set up before subscriptions had owners, delivered as the built-in admin role would read).
    owner_id: UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SubscriptionWithSecret(SubscriptionOut, kw_only=True):
    #: The signing secret: in this response only (at creation and rotation), never again.
    secret: str


class AttemptOut(msgspec.Struct, kw_only=True):
    id: UUID
    subscription_id: UUID
    event_id: UUID
    event_type: str
    attempt: int
    #: delivered, retrying, failed (given up) or disabled (410 Gone).
    outcome: str
    status_code: int | None
    response_ms: int | None
    error: str | None
    #: The first kilobyte of what the receiver answered.
    response_body: str | None
    at: dt.datetime


class AttemptPage(msgspec.Struct, kw_only=True):
    items: list[AttemptOut]
    #: Pass as ``before`` for the next (older) page; null on the last page.
    next_before: UUID | None = None


class WebhookPayload(msgspec.Struct, kw_only=True):
    """The JSON body of every delivery: the event as it was published."""

    id: UUID
    type: str
    tenant_id: UUID
    occurred_at: dt.datetime
    data: dict[str, Any]
