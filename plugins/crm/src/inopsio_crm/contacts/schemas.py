"""What the contacts, companies and lead conversion API speaks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

from inopsio_crm.leads.schemas import LeadOut
from inopsio_crm.pipeline.schemas import DealOut

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text200 = Annotated[str, msgspec.Meta(max_length=200)]
Tags = Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=50)]], msgspec.Meta(max_length=50)]


class CompanyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    domain: Annotated[str, msgspec.Meta(max_length=253)] = ""
    phone: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    address: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    owner_id: UUID | None = None
    tags: Tags = msgspec.field(default_factory=list)


class CompanyPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    domain: Annotated[str, msgspec.Meta(max_length=253)] | msgspec.UnsetType = msgspec.UNSET
    phone: Annotated[str, msgspec.Meta(max_length=50)] | msgspec.UnsetType | None = msgspec.UNSET
    address: Annotated[str, msgspec.Meta(max_length=1000)] | msgspec.UnsetType = msgspec.UNSET
    owner_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET


class CompanyOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    domain: str
    phone: str | None
    address: str
    owner_id: UUID | None
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    title: Text200 = ""
    company_id: UUID | None = None
    owner_id: UUID | None = None
    tags: Tags = msgspec.field(default_factory=list)


class ContactPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Annotated[str, msgspec.Meta(max_length=320)] | msgspec.UnsetType | None = msgspec.UNSET
    phone: Annotated[str, msgspec.Meta(max_length=50)] | msgspec.UnsetType | None = msgspec.UNSET
    title: Text200 | msgspec.UnsetType = msgspec.UNSET
    company_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    owner_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET


class ContactOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    email: str | None
    phone: str | None
    title: str
    company_id: UUID | None
    owner_id: UUID | None
    lead_id: UUID | None
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class ConvertIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How to convert: the company is found by name (case-insensitive) or created; the deal is optional."""

    #: The lead's company when omitted; no company when both are empty.
    company_name: Text200 | None = None
    create_deal: bool = True
    deal_title: Text200 | None = None
    pipeline_id: UUID | None = None
    stage_id: UUID | None = None
    #: The lead's estimated value when omitted.
    deal_value: Decimal | None = None
    deal_currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | None = None


class ConversionOut(msgspec.Struct, kw_only=True):
    lead: LeadOut
    contact: ContactOut
    company: CompanyOut | None
    deal: DealOut | None
