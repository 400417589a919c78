"""What the leads API speaks (msgspec), separate from the ORM models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
Source = Annotated[str, msgspec.Meta(max_length=50)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
#: Checked in :func:`inopsio_crm.leads.validation.check_money` (msgspec constrains no Decimal).
Money = Decimal
LeadStatus = Literal["new", "contacted", "qualified", "unqualified", "converted"]
FieldKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
FieldType = Literal["text", "number", "date", "choice", "boolean"]
CustomValue = str | int | float | bool | None


class LeadIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    company: ShortText = ""
    title: ShortText = ""
    source: Source = ""
    status: LeadStatus = "new"
    owner_id: UUID | None = None
    estimated_value: Money | None = None
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    #: A first note for the timeline.
    notes: Annotated[str, msgspec.Meta(max_length=20_000)] = ""
    custom: dict[str, CustomValue] = msgspec.field(default_factory=dict)


class LeadPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A partial update: only the fields given change (``null`` clears an optional one)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Annotated[str, msgspec.Meta(max_length=320)] | msgspec.UnsetType | None = msgspec.UNSET
    phone: Annotated[str, msgspec.Meta(max_length=50)] | msgspec.UnsetType | None = msgspec.UNSET
    company: ShortText | msgspec.UnsetType = msgspec.UNSET
    title: ShortText | msgspec.UnsetType = msgspec.UNSET
    source: Source | msgspec.UnsetType = msgspec.UNSET
    status: LeadStatus | msgspec.UnsetType = msgspec.UNSET
    owner_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    estimated_value: Money | msgspec.UnsetType | None = msgspec.UNSET
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | msgspec.UnsetType | None = msgspec.UNSET
    tags: Annotated[list[Tag], msgspec.Meta(max_length=50)] | msgspec.UnsetType = msgspec.UNSET
    #: Keys given replace their values (``null`` removes one); keys not given stay.
    custom: dict[str, CustomValue] | msgspec.UnsetType = msgspec.UNSET


class LeadOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    email: str | None
    phone: str | None
    company: str
    title: str
    source: str
    status: str
    owner_id: UUID | None
    estimated_value: Decimal | None
    currency: str | None
    tags: list[str]
    custom: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None
    merged_into_id: UUID | None = None


class LeadPage(msgspec.Struct, kw_only=True):
    items: list[LeadOut]
    #: Pass as ``cursor`` for the next page; ``null`` on the last page.
    next_cursor: str | None


class DuplicateMatch(msgspec.Struct, kw_only=True):
    lead: LeadOut
    #: Why it matches: ``email``, ``phone`` and/or ``name_company``.
    reasons: list[str]
    #: Similarity of name + company, 0-100.
    score: float


class NoteIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


class ActivityOut(msgspec.Struct, kw_only=True):
    id: UUID
    lead_id: UUID
    kind: str
    actor_id: UUID | None
    body: str
    data: dict[str, Any]
    created_at: dt.datetime


class MergeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The duplicate folded into the lead of the URL (which survives).
    duplicate_id: UUID


class AssignIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    owner_id: UUID | None


class BulkAssignIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    lead_ids: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=1000)]
    owner_id: UUID | None


class BulkAssignOut(msgspec.Struct, kw_only=True):
    assigned: int


class AssignmentRuleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool
    member_ids: Annotated[list[UUID], msgspec.Meta(max_length=500)] = msgspec.field(default_factory=list)


class AssignmentRuleOut(msgspec.Struct, kw_only=True):
    enabled: bool
    member_ids: list[UUID]
    #: The member the next unassigned new lead goes to, when the rule is on.
    next_member_id: UUID | None


class CustomFieldIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: FieldKey
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: FieldType
    choices: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]], msgspec.Meta(max_length=200)
    ] = msgspec.field(default_factory=list)
    required: bool = False
    position: int = 0


class CustomFieldPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    choices: (
        Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]], msgspec.Meta(max_length=200)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    required: bool | msgspec.UnsetType = msgspec.UNSET
    position: int | msgspec.UnsetType = msgspec.UNSET


class CustomFieldOut(msgspec.Struct, kw_only=True):
    id: UUID
    key: str
    label: str
    type: str
    choices: list[str]
    required: bool
    position: int
