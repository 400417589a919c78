"""What the pipelines and deals API speaks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

StageKind = Literal["open", "won", "lost"]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
StageName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


class StageIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: StageName
    probability: Percent = 0
    kind: StageKind = "open"
    #: Where to insert it (0 = first); at the end when omitted.
    position: Annotated[int, msgspec.Meta(ge=0)] | None = None


class StagePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: StageName | msgspec.UnsetType = msgspec.UNSET
    probability: Percent | msgspec.UnsetType = msgspec.UNSET
    kind: StageKind | msgspec.UnsetType = msgspec.UNSET


class StageOut(msgspec.Struct, kw_only=True):
    id: UUID
    pipeline_id: UUID
    name: str
    position: int
    probability: int
    kind: str


class StageOrderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Every stage of the pipeline, in the new order.
    stage_ids: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=100)]


class PipelineIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Title
    #: Stages to create with it; the five default stages when omitted.
    stages: Annotated[list[StageIn], msgspec.Meta(max_length=100)] | None = None


class PipelinePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: Title | msgspec.UnsetType = msgspec.UNSET
    position: int | msgspec.UnsetType = msgspec.UNSET


class PipelineOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    position: int
    stages: list[StageOut]


class DealIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title
    #: The tenant's first pipeline when omitted.
    pipeline_id: UUID | None = None
    #: The pipeline's first stage when omitted.
    stage_id: UUID | None = None
    value: Decimal | None = None
    currency: Currency | None = None
    probability: Percent | None = None
    expected_close_date: dt.date | None = None
    owner_id: UUID | None = None
    contact_id: UUID | None = None
    company_id: UUID | None = None
    lead_id: UUID | None = None


class DealPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    #: The version the client last saw; a stale one gets 409 with the current deal.
    version: int
    title: Title | msgspec.UnsetType = msgspec.UNSET
    value: Decimal | msgspec.UnsetType | None = msgspec.UNSET
    currency: Currency | msgspec.UnsetType | None = msgspec.UNSET
    probability: Percent | msgspec.UnsetType | None = msgspec.UNSET
    expected_close_date: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    owner_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    contact_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    company_id: UUID | msgspec.UnsetType | None = msgspec.UNSET


class DealMove(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stage_id: UUID
    #: Index in the target stage's column (0 = top); past the end means last.
    position: Annotated[int, msgspec.Meta(ge=0)]
    version: int


class DealOut(msgspec.Struct, kw_only=True):
    id: UUID
    pipeline_id: UUID
    stage_id: UUID
    position: int
    title: str
    value: Decimal | None
    currency: str | None
    probability: int | None
    expected_close_date: dt.date | None
    owner_id: UUID | None
    contact_id: UUID | None
    company_id: UUID | None
    lead_id: UUID | None
    version: int
    stage_entered_at: dt.datetime
    closed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class StageColumn(msgspec.Struct, kw_only=True):
    stage: StageOut
    deals: list[DealOut]


class Board(msgspec.Struct, kw_only=True):
    pipeline: PipelineOut
    columns: list[StageColumn]


class StageMetrics(msgspec.Struct, kw_only=True):
    stage_id: UUID
    name: str
    kind: str
    count: int
    #: Sum of deal values by currency (values in different currencies are never added up).
    total_value: dict[str, Decimal]
    #: Each deal's value times its probability (the deal's own, else its stage's).
    weighted_value: dict[str, Decimal]
    #: Of the deals that ever entered this stage, the share that went on to a later stage (0-1).
    conversion: float | None


class PipelineMetrics(msgspec.Struct, kw_only=True):
    pipeline_id: UUID
    stages: list[StageMetrics]
    count: int
    won: int
    lost: int
    #: won / (won + lost), or null before any deal closed.
    win_rate: float | None
    #: Average age in days of the open deals.
    average_open_age_days: float | None
