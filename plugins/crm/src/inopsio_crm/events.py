"""The CRM's event types, their payloads and who may read them (``docs/events.md`` lists them)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from inopsio.events.schemas import EventReader, EventType
from inopsio_crm.permissions import READ_ALL_LEADS

LEADS_READ = "crm.leads.read"
DEALS_READ = "crm.deals.read"


class LeadCreated(msgspec.Struct, kw_only=True):
    lead_id: UUID
    name: str
    email: str | None
    company: str
    source: str
    status: str
    owner_id: UUID | None


class LeadUpdated(msgspec.Struct, kw_only=True):
    lead_id: UUID
    #: The names of the fields that changed.
    changed: list[str]
    status: str
    #: The lead's owner once the change is made (who may see the event, see :func:`lead_visible`).
    owner_id: UUID | None


class LeadAssigned(msgspec.Struct, kw_only=True):
    lead_id: UUID
    owner_id: UUID | None
    previous_owner_id: UUID | None
    #: ``manual``, ``bulk``, ``round_robin``, ``import`` or ``workflow``.
    how: str


class LeadConverted(msgspec.Struct, kw_only=True):
    lead_id: UUID
    contact_id: UUID
    company_id: UUID | None
    deal_id: UUID | None
    owner_id: UUID | None


class LeadMerged(msgspec.Struct, kw_only=True):
    #: The lead that remains.
    survivor_id: UUID
    #: The lead folded into it (soft-deleted, remembered as merged).
    merged_id: UUID
    #: The surviving lead's owner after the merge.
    owner_id: UUID | None


class DealCreated(msgspec.Struct, kw_only=True):
    deal_id: UUID
    pipeline_id: UUID
    stage_id: UUID
    title: str
    value: Decimal | None
    currency: str | None
    owner_id: UUID | None


class DealStageChanged(msgspec.Struct, kw_only=True):
    deal_id: UUID
    pipeline_id: UUID
    from_stage_id: UUID
    to_stage_id: UUID
    position: int
    version: int


class DealClosed(msgspec.Struct, kw_only=True):
    """Data of ``crm.deal.won`` and ``crm.deal.lost``."""

    deal_id: UUID
    pipeline_id: UUID
    stage_id: UUID
    value: Decimal | None
    currency: str | None
    owner_id: UUID | None


def lead_visible(data: Mapping[str, Any], reader: EventReader) -> bool:
    """Every lead with crm.leads.read_all; otherwise the reader's own leads and unassigned ones."""
    if reader.allowed(READ_ALL_LEADS):
        return True
    if "owner_id" not in data:
        return False  # stored before lead events named the owner: whose it is is unknown
    owner = data["owner_id"]
    user_id = reader.user_id
    return owner is None or (user_id is not None and str(owner) == str(user_id))


def _lead_event(name: str, description: str, payload: type[msgspec.Struct]) -> EventType:
    # Like the lead list: private leads stay private in the activity feed and on sockets.
    return EventType(name=name, description=description, permission=LEADS_READ, payload=payload, visible=lead_visible)


def _deal_event(name: str, description: str, payload: type[msgspec.Struct]) -> EventType:
    return EventType(name=name, description=description, permission=DEALS_READ, payload=payload)


EVENT_TYPES = (
    _lead_event("crm.lead.created", "A lead was created (by hand, import or API)", LeadCreated),
    _lead_event("crm.lead.updated", "A lead's fields changed", LeadUpdated),
    _lead_event("crm.lead.assigned", "A lead got a new owner (or none)", LeadAssigned),
    _lead_event("crm.lead.converted", "A lead became a contact, a company and a deal", LeadConverted),
    _lead_event("crm.lead.merged", "A duplicate lead was merged into another", LeadMerged),
    _deal_event("crm.deal.created", "A deal was created", DealCreated),
    _deal_event("crm.deal.stage_changed", "A deal moved to another stage or position", DealStageChanged),
    _deal_event("crm.deal.won", "A deal entered a won stage", DealClosed),
    _deal_event("crm.deal.lost", "A deal entered a lost stage", DealClosed),
)
