"""The CRM's event types and their payloads (``docs/events.md`` lists them with their JSON Schemas)."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import msgspec

from inopsio.events.schemas import EventType


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


class LeadMerged(msgspec.Struct, kw_only=True):
    #: The lead that remains.
    survivor_id: UUID
    #: The lead folded into it (soft-deleted, remembered as merged).
    merged_id: UUID


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


EVENT_TYPES = (
    EventType(name="crm.lead.created", description="A lead was created (by hand, import or API)", payload=LeadCreated),
    EventType(name="crm.lead.updated", description="A lead's fields changed", payload=LeadUpdated),
    EventType(name="crm.lead.assigned", description="A lead got a new owner (or none)", payload=LeadAssigned),
    EventType(
        name="crm.lead.converted", description="A lead became a contact, a company and a deal", payload=LeadConverted
    ),
    EventType(name="crm.lead.merged", description="A duplicate lead was merged into another", payload=LeadMerged),
    EventType(name="crm.deal.created", description="A deal was created", payload=DealCreated),
    EventType(
        name="crm.deal.stage_changed", description="A deal moved to another stage or position", payload=DealStageChanged
    ),
    EventType(name="crm.deal.won", description="A deal entered a won stage", payload=DealClosed),
    EventType(name="crm.deal.lost", description="A deal entered a lost stage", payload=DealClosed),
)
