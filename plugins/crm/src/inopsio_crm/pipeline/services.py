"""Pipelines, stages and deals: every write goes through :class:`PipelineService`, in the caller's transaction.

Deals carry a ``version``: each change raises it and a change naming an older version is refused with
409 and the deal as it is now, so two people dragging the same card never overwrite each other
silently. A move locks the stages it touches, so positions in a column stay a dense 0..n-1 sequence.
Locking reads use ``populate_existing``: the row read under the lock must replace what the session
already holds, or a version check would compare against a stale copy.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.tenancy.schemas import TenantInfo
from inopsio_crm.access import Viewer
from inopsio_crm.contacts.models import Company, Contact
from inopsio_crm.events import DealClosed, DealCreated, DealStageChanged
from inopsio_crm.leads.models import Lead
from inopsio_crm.leads.services import LeadService
from inopsio_crm.leads.validation import FieldErrors, check_money
from inopsio_crm.pipeline.models import Deal, DealStageChange, Pipeline, Stage
from inopsio_crm.pipeline.schemas import (
    Board,
    DealIn,
    DealMove,
    DealOut,
    DealPatch,
    PipelineIn,
    PipelineMetrics,
    PipelineOut,
    StageColumn,
    StageIn,
    StageMetrics,
    StageOut,
    StagePatch,
)

_deals = Deal.__table__.c
#: What a deal row returns: the fields of :class:`DealOut`.
_DEAL_COLUMNS = tuple(_deals[name] for name in DealOut.__struct_fields__)

#: A move in one statement. ``target`` clamps the position to the column's length without the deal;
#: ``others`` closes the gap the deal leaves (``left``) and opens one where it lands, touching only
#: the deals that shift; ``moved`` moves the deal; ``entered`` records a stage entry. All of it reads
#: the snapshot taken after the stages were locked, so nothing moved in between.
_MOVE = text(
    """
    WITH target AS (
        SELECT least(CAST(:position AS integer), count(*)::integer) AS position
        FROM crm_deals
        WHERE tenant_id = :tenant_id AND stage_id = :to_stage AND id <> :deal_id
    ), shifts AS (
        SELECT d.id, d.position,
               (d.stage_id = :from_stage AND d.position > :old_position)::integer AS left_gap,
               (d.stage_id = :to_stage
                AND d.position - (d.stage_id = :from_stage AND d.position > :old_position)::integer
                    >= (SELECT position FROM target))::integer AS opened
        FROM crm_deals d
        WHERE d.tenant_id = :tenant_id AND d.stage_id IN (:from_stage, :to_stage) AND d.id <> :deal_id
    ), others AS (
        UPDATE crm_deals d
        SET position = s.position - s.left_gap + s.opened, updated_at = :now
        FROM shifts s
        WHERE d.tenant_id = :tenant_id AND d.id = s.id AND s.opened <> s.left_gap
    ), moved AS (
        UPDATE crm_deals
        SET stage_id = :to_stage,
            position = (SELECT position FROM target),
            version = version + 1,
            updated_at = :now,
            stage_entered_at = CASE WHEN :entering THEN :now ELSE stage_entered_at END,
            closed_at = CASE CAST(:closing AS text)
                WHEN 'reopen' THEN NULL WHEN 'close' THEN :now ELSE closed_at END
        WHERE tenant_id = :tenant_id AND id = :deal_id
        RETURNING *
    ), entered AS (
        INSERT INTO crm_deal_stage_changes (tenant_id, id, deal_id, from_stage_id, to_stage_id, actor_id, changed_at)
        SELECT :tenant_id, :change_id, :deal_id, :from_stage, :to_stage, CAST(:actor_id AS uuid), :now
        WHERE :entering
    )
    SELECT * FROM moved
    """
)

DEFAULT_STAGES = (
    StageIn(name="Qualification", probability=10),
    StageIn(name="Proposal", probability=40),
    StageIn(name="Negotiation", probability=70),
    StageIn(name="Won", probability=100, kind="won"),
    StageIn(name="Lost", probability=0, kind="lost"),
)


def stage_out(stage: Stage) -> StageOut:
    return StageOut(
        id=stage.id,
        pipeline_id=stage.pipeline_id,
        name=stage.name,
        position=stage.position,
        probability=stage.probability,
        kind=stage.kind,
    )


def deal_out(deal: Any) -> DealOut:
    """A deal (ORM object or row) as the API shows it."""
    return DealOut(
        id=deal.id,
        pipeline_id=deal.pipeline_id,
        stage_id=deal.stage_id,
        position=deal.position,
        title=deal.title,
        value=deal.value,
        currency=deal.currency,
        probability=deal.probability,
        expected_close_date=deal.expected_close_date,
        owner_id=deal.owner_id,
        contact_id=deal.contact_id,
        company_id=deal.company_id,
        lead_id=deal.lead_id,
        version=deal.version,
        stage_entered_at=deal.stage_entered_at,
        closed_at=deal.closed_at,
        created_at=deal.created_at,
        updated_at=deal.updated_at,
    )


async def add_pipeline(session: AsyncSession, name: str, stages: Sequence[StageIn] = DEFAULT_STAGES) -> Pipeline:
    """A pipeline with its stages, in the session's tenant (also what ``on_tenant_created`` seeds)."""
    position = (await session.execute(select(func.coalesce(func.max(Pipeline.position) + 1, 0)))).scalar_one()
    pipeline = Pipeline(name=name, position=position)
    session.add(pipeline)
    await session.flush()
    for index, stage in enumerate(stages):
        session.add(
            Stage(
                pipeline_id=pipeline.id, name=stage.name, position=index, probability=stage.probability, kind=stage.kind
            )
        )
    await session.flush()
    return pipeline


@dataclass(frozen=True)
class LinkedDeal:
    """A deal as a contact's, company's or lead's page lists it: with its stage and pipeline names."""

    deal: DealOut
    stage: str
    stage_kind: str
    pipeline: str


class PipelineService:
    def __init__(self, kernel: Any, session: AsyncSession, tenant: TenantInfo, viewer: Viewer) -> None:
        self.kernel = kernel
        self.session = session
        self.tenant = tenant
        self.viewer = viewer

    # -- pipelines and stages --------------------------------------------------------------------

    async def pipeline(self, pipeline_id: UUID, *, for_update: bool = False) -> Pipeline:
        statement = select(Pipeline).where(Pipeline.id == pipeline_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        pipeline = (await self.session.execute(statement)).scalar_one_or_none()
        if pipeline is None:
            raise Problem(404, "not-found", "No such pipeline.")
        return pipeline

    async def stages(self, pipeline_id: UUID, *, for_update: bool = False) -> list[Stage]:
        statement = select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return list((await self.session.execute(statement)).scalars())

    async def pipeline_out(self, pipeline: Pipeline) -> PipelineOut:
        stages = await self.stages(pipeline.id)
        return PipelineOut(
            id=pipeline.id, name=pipeline.name, position=pipeline.position, stages=[stage_out(s) for s in stages]
        )

    async def list_pipelines(self) -> list[PipelineOut]:
        pipelines = (await self.session.execute(select(Pipeline).order_by(Pipeline.position, Pipeline.id))).scalars()
        stages: dict[UUID, list[StageOut]] = defaultdict(list)
        for stage in (await self.session.execute(select(Stage).order_by(Stage.position, Stage.id))).scalars():
            stages[stage.pipeline_id].append(stage_out(stage))
        return [PipelineOut(id=p.id, name=p.name, position=p.position, stages=stages[p.id]) for p in pipelines]

    async def create_pipeline(self, data: PipelineIn) -> Pipeline:
        stages = data.stages if data.stages is not None else DEFAULT_STAGES
        if not stages:
            raise Problem(
                422,
                "invalid-pipeline",
                "A pipeline needs at least one stage.",
                errors=[{"pointer": "/stages", "detail": "empty"}],
            )
        return await add_pipeline(self.session, data.name, stages)

    async def delete_pipeline(self, pipeline_id: UUID) -> None:
        pipeline = await self.pipeline(pipeline_id, for_update=True)
        deals = (await self.session.execute(select(func.count()).where(Deal.pipeline_id == pipeline.id))).scalar_one()
        if deals:
            raise Problem(
                409,
                "pipeline-has-deals",
                f"The pipeline still holds {deals} deal(s): move or delete them first.",
                deals=deals,
            )
        await self.session.delete(pipeline)

    async def stage(self, stage_id: UUID, *, for_update: bool = False) -> Stage:
        statement = select(Stage).where(Stage.id == stage_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        stage = (await self.session.execute(statement)).scalar_one_or_none()
        if stage is None:
            raise Problem(404, "not-found", "No such stage.")
        return stage

    async def add_stage(self, pipeline_id: UUID, data: StageIn) -> Stage:
        pipeline = await self.pipeline(pipeline_id, for_update=True)
        stages = await self.stages(pipeline.id, for_update=True)
        position = len(stages) if data.position is None else min(data.position, len(stages))
        stage = Stage(
            pipeline_id=pipeline.id, name=data.name, position=position, probability=data.probability, kind=data.kind
        )
        stages.insert(position, stage)
        self.session.add(stage)
        self._renumber(stages)
        await self.session.flush()
        return stage

    async def update_stage(self, stage_id: UUID, data: StagePatch) -> Stage:
        stage = await self.stage(stage_id, for_update=True)
        for name in data.__struct_fields__:
            value = getattr(data, name)
            if value is not msgspec.UNSET:
                setattr(stage, name, value)
        await self.session.flush()
        return stage

    async def reorder_stages(self, pipeline_id: UUID, stage_ids: Sequence[UUID]) -> list[Stage]:
        await self.pipeline(pipeline_id, for_update=True)
        stages = {s.id: s for s in await self.stages(pipeline_id, for_update=True)}
        if sorted(stage_ids) != sorted(stages) or len(set(stage_ids)) != len(stage_ids):
            raise Problem(
                422,
                "invalid-stage-order",
                "Name every stage of this pipeline exactly once.",
                errors=[{"pointer": "/stage_ids", "detail": "must list each of the pipeline's stages once"}],
            )
        ordered = [stages[i] for i in stage_ids]
        self._renumber(ordered)
        await self.session.flush()
        return ordered

    async def delete_stage(self, stage_id: UUID, move_to: UUID | None) -> None:
        """Delete a stage; its deals go to the end of ``move_to`` (required when it holds deals)."""
        stage = await self.stage(stage_id)
        stages = await self.stages(stage.pipeline_id, for_update=True)
        if len(stages) == 1:
            raise Problem(409, "last-stage", "A pipeline keeps at least one stage.")
        deals = list(
            (
                await self.session.execute(
                    select(Deal)
                    .where(Deal.stage_id == stage.id)
                    .order_by(Deal.position, Deal.id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )
        if deals:
            target = next((s for s in stages if s.id == move_to and s.id != stage.id), None)
            if target is None:
                raise Problem(
                    422,
                    "move-to-required",
                    "The stage holds deals: name another stage of the same pipeline to move them to (?move_to=).",
                    errors=[{"pointer": "/move_to", "source": "query", "detail": "a stage of this pipeline"}],
                )
            count = (await self.session.execute(select(func.count()).where(Deal.stage_id == target.id))).scalar_one()
            for offset, deal in enumerate(deals):
                await self._enter_stage(deal, stage, target, count + offset)
        await self.session.delete(stage)
        await self.session.flush()
        self._renumber([s for s in stages if s.id != stage.id])
        await self.session.flush()

    @staticmethod
    def _renumber(items: Sequence[Any]) -> None:
        for index, item in enumerate(items):
            if item.position != index:
                item.position = index

    # -- deals -----------------------------------------------------------------------------------

    async def deal(self, deal_id: UUID, *, for_update: bool = False) -> Deal:
        statement = select(Deal).where(Deal.id == deal_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        deal = (await self.session.execute(statement)).scalar_one_or_none()
        if deal is None:
            raise Problem(404, "not-found", "No such deal.")
        return deal

    async def linked_deals(
        self,
        *,
        company_id: UUID | None = None,
        contact_id: UUID | None = None,
        lead_id: UUID | None = None,
        limit: int = 100,
    ) -> list[LinkedDeal]:
        """The deals of a company, a contact or a lead (the ones given), newest first."""
        links = {Deal.company_id: company_id, Deal.contact_id: contact_id, Deal.lead_id: lead_id}
        conditions = [column == value for column, value in links.items() if value is not None]
        if not conditions:
            return []
        rows = await self.session.execute(
            select(Deal, Stage.name, Stage.kind, Pipeline.name)
            .join(Stage, (Stage.id == Deal.stage_id) & (Stage.pipeline_id == Deal.pipeline_id))
            .join(Pipeline, Pipeline.id == Deal.pipeline_id)
            .where(*conditions)
            .order_by(Deal.created_at.desc(), Deal.id.desc())
            .limit(limit)
        )
        return [
            LinkedDeal(deal=deal_out(deal), stage=stage, stage_kind=kind, pipeline=pipeline)
            for deal, stage, kind, pipeline in rows.tuples()
        ]

    async def _check_references(self, errors: FieldErrors, **refs: UUID | None) -> None:
        """Each given id names a row of this tenant (another tenant's id reads as unknown)."""
        models = {"contact_id": Contact, "company_id": Company, "lead_id": Lead}
        for name, value in refs.items():
            if value is None:
                continue
            if name == "owner_id":
                await LeadService(self.kernel, self.session, self.tenant, self.viewer).require_member(
                    value, "/owner_id", errors
                )
                continue
            model = models[name]
            found = (await self.session.execute(select(model.id).where(model.id == value))).first()
            if found is None:
                errors.add(f"/{name}", "no such record")

    async def create_deal(self, data: DealIn) -> Deal:
        errors = FieldErrors()
        currency = check_money(data.value, data.currency, errors, value_field="/value")
        await self._check_references(
            errors, owner_id=data.owner_id, contact_id=data.contact_id, company_id=data.company_id, lead_id=data.lead_id
        )
        pipeline_id = data.pipeline_id
        if pipeline_id is None:
            pipeline_id = (
                await self.session.execute(select(Pipeline.id).order_by(Pipeline.position, Pipeline.id).limit(1))
            ).scalar_one_or_none()
        stages = await self.stages(pipeline_id, for_update=True) if pipeline_id else []
        if not stages:
            errors.add("/pipeline_id", "no such pipeline")
        stage = (
            stages[0] if stages and data.stage_id is None else next((s for s in stages if s.id == data.stage_id), None)
        )
        if stages and stage is None:
            errors.add("/stage_id", "no such stage in this pipeline")
        errors.raise_if_any("invalid-deal", "deal")
        assert stage is not None
        assert pipeline_id is not None
        count = (await self.session.execute(select(func.count()).where(Deal.stage_id == stage.id))).scalar_one()
        now = utcnow()
        deal = Deal(
            pipeline_id=pipeline_id,
            stage_id=stage.id,
            position=count,
            title=data.title.strip(),
            value=data.value,
            currency=currency,
            probability=data.probability,
            expected_close_date=data.expected_close_date,
            owner_id=data.owner_id,
            contact_id=data.contact_id,
            company_id=data.company_id,
            lead_id=data.lead_id,
            stage_entered_at=now,
            closed_at=now if stage.kind != "open" else None,
        )
        self.session.add(deal)
        await self.session.flush()
        self.session.add(DealStageChange(deal_id=deal.id, to_stage_id=stage.id, actor_id=self.viewer.user_id))
        await self.kernel.events.publish(
            self.session,
            "crm.deal.created",
            DealCreated(
                deal_id=deal.id,
                pipeline_id=pipeline_id,
                stage_id=stage.id,
                title=deal.title,
                value=deal.value,
                currency=deal.currency,
                owner_id=deal.owner_id,
            ),
        )
        return deal

    def _check_version(self, deal: Any, version: int) -> None:
        if deal.version != version:
            raise self._stale(deal)

    @staticmethod
    def _stale(deal: Any) -> Problem:
        return Problem(
            409,
            "stale-deal",
            "Someone changed this deal since you loaded it; here it is as it is now.",
            current=msgspec.to_builtins(deal_out(deal)),
        )

    async def update_deal(self, deal_id: UUID, patch: DealPatch) -> Deal:
        deal = await self.deal(deal_id, for_update=True)
        self._check_version(deal, patch.version)
        given = {
            f: getattr(patch, f)
            for f in patch.__struct_fields__
            if f != "version" and getattr(patch, f) is not msgspec.UNSET
        }
        errors = FieldErrors()
        if "value" in given or "currency" in given:
            value = given.get("value", deal.value)
            given["value"] = value
            given["currency"] = check_money(value, given.get("currency", deal.currency), errors, value_field="/value")
        await self._check_references(
            errors,
            **{
                k: given[k]
                for k in ("owner_id", "contact_id", "company_id")
                if k in given and given[k] != getattr(deal, k)
            },
        )
        errors.raise_if_any("invalid-deal", "deal")
        for name, value in given.items():
            setattr(deal, name, value.strip() if name == "title" else value)
        deal.version += 1
        deal.updated_at = utcnow()
        await self.session.flush()
        return deal

    async def delete_deal(self, deal_id: UUID) -> None:
        deal = await self.deal(deal_id, for_update=True)
        stage = await self.stage(deal.stage_id, for_update=True)
        await self.session.execute(
            update(Deal)
            .where(Deal.stage_id == stage.id, Deal.position > deal.position)
            .values(position=Deal.position - 1)
        )
        await self.session.delete(deal)

    async def move_deal(self, deal_id: UUID, move: DealMove) -> Any:
        """Put the deal at ``position`` of ``stage_id`` (same pipeline); publish the move (and won/lost).

        Four statements: lock the stages, lock the deal (and check its version), move (one statement:
        the others' positions, the deal, its stage entry), publish. Returns the deal as a row.
        """
        connection = await self.session.connection()
        tenant_id = self.tenant.id
        # The stages it leaves and enters first, always in id order: the move shifts other deals of
        # those columns, so whoever locks a deal row there must hold the column already, or two moves
        # wait for each other. The deal's stage is read here unlocked; checked once the deal is locked.
        stages = Stage.__table__.c
        current = select(_deals.stage_id).where(_deals.tenant_id == tenant_id, _deals.id == deal_id)
        pipeline = select(_deals.pipeline_id).where(_deals.tenant_id == tenant_id, _deals.id == deal_id)
        locked = {
            stage.id: stage
            for stage in await connection.execute(
                select(stages.id, stages.kind)
                .where(
                    stages.tenant_id == tenant_id,
                    stages.pipeline_id == pipeline.scalar_subquery(),
                    or_(stages.id == move.stage_id, stages.id == current.scalar_subquery()),
                )
                .order_by(stages.id)
                .with_for_update()
            )
        }
        deal = (
            await connection.execute(
                select(*_DEAL_COLUMNS).where(_deals.tenant_id == tenant_id, _deals.id == deal_id).with_for_update()
            )
        ).first()
        if deal is None:
            raise Problem(404, "not-found", "No such deal.")
        self._check_version(deal, move.version)
        if deal.stage_id not in locked:  # moved since it was read: the caller's version is stale too
            raise self._stale(deal)
        target = locked.get(move.stage_id)
        if target is None:
            raise Problem(
                422,
                "invalid-move",
                "There is no such stage in this deal's pipeline.",
                errors=[{"pointer": "/stage_id", "detail": "no such stage in this pipeline"}],
            )
        source = locked[deal.stage_id]
        entering = target.id != source.id
        closing = "keep"
        if entering and target.kind == "open":
            closing = "reopen"
        elif entering and source.kind != target.kind:
            closing = "close"
        now = utcnow()
        moved = (
            await connection.execute(
                _MOVE,
                {
                    "tenant_id": tenant_id,
                    "deal_id": deal.id,
                    "from_stage": source.id,
                    "to_stage": target.id,
                    "old_position": deal.position,
                    "position": move.position,
                    "now": now,
                    "entering": entering,
                    "closing": closing,
                    "change_id": new_id(),
                    "actor_id": self.viewer.user_id,
                },
            )
        ).one()
        await self.kernel.events.publish(
            self.session,
            "crm.deal.stage_changed",
            DealStageChanged(
                deal_id=moved.id,
                pipeline_id=moved.pipeline_id,
                from_stage_id=source.id,
                to_stage_id=target.id,
                position=moved.position,
                version=moved.version,
            ),
        )
        if closing == "close":
            await self.kernel.events.publish(
                self.session,
                f"crm.deal.{target.kind}",
                DealClosed(
                    deal_id=moved.id,
                    pipeline_id=moved.pipeline_id,
                    stage_id=target.id,
                    value=moved.value,
                    currency=moved.currency,
                    owner_id=moved.owner_id,
                ),
            )
        return moved

    async def _enter_stage(self, deal: Deal, source: Stage, target: Stage, position: int) -> None:
        now = utcnow()
        deal.stage_id = target.id
        deal.position = position
        deal.stage_entered_at = now
        deal.version += 1
        deal.updated_at = now
        self.session.add(
            DealStageChange(
                deal_id=deal.id, from_stage_id=source.id, to_stage_id=target.id, actor_id=self.viewer.user_id
            )
        )
        if target.kind == "open":
            deal.closed_at = None
            return
        if source.kind == target.kind:
            return
        deal.closed_at = now
        await self.session.flush()
        await self.kernel.events.publish(
            self.session,
            f"crm.deal.{target.kind}",
            DealClosed(
                deal_id=deal.id,
                pipeline_id=deal.pipeline_id,
                stage_id=target.id,
                value=deal.value,
                currency=deal.currency,
                owner_id=deal.owner_id,
            ),
        )

    async def board(self, pipeline_id: UUID) -> Board:
        pipeline = await self.pipeline(pipeline_id)
        stages = await self.stages(pipeline.id)
        deals = (
            await self.session.execute(
                select(Deal).where(Deal.pipeline_id == pipeline.id).order_by(Deal.position, Deal.id)
            )
        ).scalars()
        by_stage: dict[UUID, list[DealOut]] = defaultdict(list)
        for deal in deals:
            by_stage[deal.stage_id].append(deal_out(deal))
        return Board(
            pipeline=PipelineOut(
                id=pipeline.id, name=pipeline.name, position=pipeline.position, stages=[stage_out(s) for s in stages]
            ),
            columns=[StageColumn(stage=stage_out(s), deals=by_stage[s.id]) for s in stages],
        )

    # -- metrics ---------------------------------------------------------------------------------

    async def metrics(
        self,
        pipeline_id: UUID,
        *,
        owner_id: UUID | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        value_min: Decimal | None = None,
        value_max: Decimal | None = None,
    ) -> PipelineMetrics:
        pipeline = await self.pipeline(pipeline_id)
        stages = await self.stages(pipeline.id)
        conditions = [Deal.pipeline_id == pipeline.id]
        if owner_id is not None:
            conditions.append(Deal.owner_id == owner_id)
        if created_from is not None:
            conditions.append(Deal.created_at >= created_from)
        if created_to is not None:
            conditions.append(Deal.created_at < created_to)
        if value_min is not None:
            conditions.append(Deal.value >= value_min)
        if value_max is not None:
            conditions.append(Deal.value <= value_max)
        probability = func.coalesce(Deal.probability, Stage.probability)
        rows = (
            await self.session.execute(
                select(
                    Deal.stage_id,
                    Deal.currency,
                    func.count(),
                    func.sum(Deal.value),
                    func.sum(Deal.value * probability / 100),
                )
                .join(Stage, (Stage.tenant_id == Deal.tenant_id) & (Stage.id == Deal.stage_id))
                .where(*conditions)
                .group_by(Deal.stage_id, Deal.currency)
            )
        ).all()
        counts: dict[UUID, int] = defaultdict(int)
        totals: dict[UUID, dict[str, Decimal]] = defaultdict(dict)
        weighted: dict[UUID, dict[str, Decimal]] = defaultdict(dict)
        for stage_id, currency, count, total, weight in rows:
            counts[stage_id] += count
            if currency is not None:
                totals[stage_id][currency] = Decimal(total).quantize(Decimal("0.01"))
                weighted[stage_id][currency] = Decimal(weight).quantize(Decimal("0.01"))
        # Stage conversion: of the deals that entered a stage, those that later reached a further stage.
        position = {s.id: s.position for s in stages}
        kind = {s.id: s.kind for s in stages}
        reached: dict[UUID, set[int]] = defaultdict(set)
        history = await self.session.execute(
            select(DealStageChange.deal_id, DealStageChange.to_stage_id)
            .join(Deal, (Deal.tenant_id == DealStageChange.tenant_id) & (Deal.id == DealStageChange.deal_id))
            .where(*conditions)
        )
        for deal_id, stage_id in history:
            if stage_id in position:
                reached[deal_id].add(position[stage_id])
        entered: dict[int, int] = defaultdict(int)
        went_on: dict[int, int] = defaultdict(int)
        lost_positions = {position[s] for s in position if kind[s] == "lost"}
        for positions in reached.values():
            furthest = max((p for p in positions if p not in lost_positions), default=-1)
            for p in positions:
                entered[p] += 1
                if furthest > p:
                    went_on[p] += 1
        now = utcnow()
        open_ages = (
            await self.session.execute(
                select(func.avg(func.extract("epoch", now - Deal.created_at)))
                .join(Stage, (Stage.tenant_id == Deal.tenant_id) & (Stage.id == Deal.stage_id))
                .where(*conditions, Stage.kind == "open")
            )
        ).scalar_one()
        won = sum(counts[s.id] for s in stages if s.kind == "won")
        lost = sum(counts[s.id] for s in stages if s.kind == "lost")
        return PipelineMetrics(
            pipeline_id=pipeline.id,
            stages=[
                StageMetrics(
                    stage_id=s.id,
                    name=s.name,
                    kind=s.kind,
                    count=counts[s.id],
                    total_value=totals[s.id],
                    weighted_value=weighted[s.id],
                    conversion=(
                        round(went_on[s.position] / entered[s.position], 4)
                        if s.kind == "open" and entered[s.position]
                        else None
                    ),
                )
                for s in stages
            ],
            count=sum(counts.values()),
            won=won,
            lost=lost,
            win_rate=round(won / (won + lost), 4) if won + lost else None,
            average_open_age_days=round(float(open_ages) / 86400, 2) if open_ages is not None else None,
        )
