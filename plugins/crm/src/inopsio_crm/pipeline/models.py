"""What the database stores about pipelines, their stages, deals and deals' moves between stages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db import Base, TenantOwned, Timestamped, tenant_foreign_key, tenant_table_args
from inopsio.db.base import utcnow

STAGE_KINDS = ("open", "won", "lost")


class Pipeline(TenantOwned, Timestamped, Base):
    __tablename__ = "crm_pipelines"

    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Stage(TenantOwned, Base):
    __tablename__ = "crm_stages"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["pipeline_id"], "crm_pipelines", ondelete="CASCADE"),
        # Deals reference (pipeline, stage) together, so a deal's stage is always of its pipeline.
        UniqueConstraint("tenant_id", "pipeline_id", "id", name="uq_crm_stages_pipeline_stage"),
        CheckConstraint(f"kind IN {STAGE_KINDS!r}", name="kind"),
        CheckConstraint("probability BETWEEN 0 AND 100", name="probability"),
    )

    pipeline_id: Mapped[UUID] = mapped_column()
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    #: Percent chance a deal here closes won (weights the pipeline value).
    probability: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(10), default="open", server_default="open")

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"kind": "open", "probability": 10}


class Deal(TenantOwned, Timestamped, Base):
    __tablename__ = "crm_deals"
    __table_args__ = tenant_table_args(
        # The stage's key carries its pipeline: one constraint says both exist and belong together.
        tenant_foreign_key(
            ["pipeline_id", "stage_id"], "crm_stages", ["pipeline_id", "id"], name="fk_crm_deals_stage_in_pipeline"
        ),
        tenant_foreign_key(["contact_id"], "crm_contacts"),
        tenant_foreign_key(["company_id"], "crm_companies"),
        tenant_foreign_key(["lead_id"], "crm_leads"),
        CheckConstraint("(value IS NULL) = (currency IS NULL)", name="value_currency"),
        CheckConstraint("probability IS NULL OR probability BETWEEN 0 AND 100", name="probability"),
        Index("ix_crm_deals_board", "tenant_id", "pipeline_id", "stage_id", "position"),
    )

    pipeline_id: Mapped[UUID] = mapped_column()
    stage_id: Mapped[UUID] = mapped_column()
    #: Order within the stage's column (0 on top).
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(200))
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    #: Overrides the stage's probability when set.
    probability: Mapped[int | None] = mapped_column(Integer)
    expected_close_date: Mapped[dt.date | None]
    owner_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    contact_id: Mapped[UUID | None] = mapped_column()
    company_id: Mapped[UUID | None] = mapped_column()
    lead_id: Mapped[UUID | None] = mapped_column()
    #: Raised by every change; a write naming an older version is refused (optimistic concurrency).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    stage_entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    closed_at: Mapped[dt.datetime | None]

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"value": None, "currency": None, "probability": None}


class DealStageChange(TenantOwned, Base):
    """A deal entering a stage (its first stage too): the history stage conversion is computed from."""

    __tablename__ = "crm_deal_stage_changes"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["deal_id"], "crm_deals", ondelete="CASCADE"),
        Index("ix_crm_deal_stage_changes_deal", "tenant_id", "deal_id"),
        Index("ix_crm_deal_stage_changes_stage", "tenant_id", "to_stage_id"),
    )

    deal_id: Mapped[UUID] = mapped_column()
    from_stage_id: Mapped[UUID | None] = mapped_column()
    to_stage_id: Mapped[UUID] = mapped_column()
    actor_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
