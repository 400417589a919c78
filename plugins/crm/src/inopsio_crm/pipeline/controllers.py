"""``/api/v1/crm/pipelines``, ``/api/v1/crm/stages`` and ``/api/v1/crm/deals``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio_crm.access import viewer_of
from inopsio_crm.pipeline.models import Deal
from inopsio_crm.pipeline.schemas import (
    Board,
    DealIn,
    DealMove,
    DealOut,
    DealPatch,
    PipelineIn,
    PipelineMetrics,
    PipelineOut,
    PipelinePatch,
    StageIn,
    StageOrderIn,
    StageOut,
    StagePatch,
)
from inopsio_crm.pipeline.services import PipelineService, deal_out, stage_out


def service(kernel: Any, db_session: Any, tenant: Any, request: Request[Any, Any, Any]) -> PipelineService:
    return PipelineService(kernel, db_session, tenant, viewer_of(request, tenant))


class PipelineController(Controller):
    path = "/api/v1/crm/pipelines"
    tags = ["crm"]

    @get("/", opt={"permission": "crm.pipelines.read"})
    async def list_pipelines(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession
    ) -> list[PipelineOut]:
        return await service(kernel, db_session, tenant, request).list_pipelines()

    @post("/", opt={"permission": "crm.pipelines.write"})
    async def create_pipeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[PipelineIn],
    ) -> PipelineOut:
        """A new pipeline with the stages given, or the five default ones."""
        svc = service(kernel, db_session, tenant, request)
        return await svc.pipeline_out(await svc.create_pipeline(data))

    @get("/{pipeline_id:uuid}", opt={"permission": "crm.pipelines.read"})
    async def get_pipeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
    ) -> PipelineOut:
        svc = service(kernel, db_session, tenant, request)
        return await svc.pipeline_out(await svc.pipeline(pipeline_id))

    @patch("/{pipeline_id:uuid}", opt={"permission": "crm.pipelines.write"})
    async def update_pipeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
        data: JSONBody[PipelinePatch],
    ) -> PipelineOut:
        svc = service(kernel, db_session, tenant, request)
        pipeline = await svc.pipeline(pipeline_id, for_update=True)
        for name in data.__struct_fields__:
            if (value := getattr(data, name)) is not msgspec.UNSET:
                setattr(pipeline, name, value)
        await db_session.flush()
        return await svc.pipeline_out(pipeline)

    @delete("/{pipeline_id:uuid}", opt={"permission": "crm.pipelines.delete"})
    async def delete_pipeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
    ) -> None:
        """Delete an empty pipeline (409 while it holds deals)."""
        await service(kernel, db_session, tenant, request).delete_pipeline(pipeline_id)

    @post("/{pipeline_id:uuid}/stages", opt={"permission": "crm.pipelines.write"})
    async def add_stage(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
        data: JSONBody[StageIn],
    ) -> StageOut:
        return stage_out(await service(kernel, db_session, tenant, request).add_stage(pipeline_id, data))

    @put("/{pipeline_id:uuid}/stage-order", opt={"permission": "crm.pipelines.write"})
    async def reorder_stages(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
        data: JSONBody[StageOrderIn],
    ) -> list[StageOut]:
        svc = service(kernel, db_session, tenant, request)
        return [stage_out(s) for s in await svc.reorder_stages(pipeline_id, data.stage_ids)]

    @get("/{pipeline_id:uuid}/board", opt={"permission": "crm.deals.read"})
    async def board(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
    ) -> Board:
        """The kanban board: each stage with its deals in order. Follow ``crm.deal.*`` on the WebSocket
        (``/api/v1/ws``) to see other people's moves live."""
        return await service(kernel, db_session, tenant, request).board(pipeline_id)

    @get("/{pipeline_id:uuid}/metrics", opt={"permission": "crm.deals.read"})
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        pipeline_id: FromPath[UUID],
        owner: FromQuery[UUID | None] = None,
        created_from: FromQuery[dt.datetime | None] = None,
        created_to: FromQuery[dt.datetime | None] = None,
        value_min: FromQuery[Decimal | None] = None,
        value_max: FromQuery[Decimal | None] = None,
    ) -> PipelineMetrics:
        """Per stage: count, total and weighted value, conversion; overall: win rate, average open deal age."""
        return await service(kernel, db_session, tenant, request).metrics(
            pipeline_id,
            owner_id=owner,
            created_from=created_from,
            created_to=created_to,
            value_min=value_min,
            value_max=value_max,
        )


class StageController(Controller):
    path = "/api/v1/crm/stages"
    tags = ["crm"]

    @patch("/{stage_id:uuid}", opt={"permission": "crm.pipelines.write"})
    async def update_stage(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        stage_id: FromPath[UUID],
        data: JSONBody[StagePatch],
    ) -> StageOut:
        """Rename a stage, change its probability, or mark it won / lost / open."""
        return stage_out(await service(kernel, db_session, tenant, request).update_stage(stage_id, data))

    @delete("/{stage_id:uuid}", opt={"permission": "crm.pipelines.delete"})
    async def delete_stage(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        stage_id: FromPath[UUID],
        move_to: FromQuery[UUID | None] = None,
    ) -> None:
        """Delete a stage, moving its deals to ``move_to`` (a stage of the same pipeline)."""
        await service(kernel, db_session, tenant, request).delete_stage(stage_id, move_to)


class DealController(Controller):
    path = "/api/v1/crm/deals"
    tags = ["crm"]

    @post("/", opt={"permission": "crm.deals.write"})
    async def create_deal(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[DealIn],
    ) -> DealOut:
        return deal_out(await service(kernel, db_session, tenant, request).create_deal(data))

    @get("/", opt={"permission": "crm.deals.read"})
    async def list_deals(
        self,
        db_session: DbSession,
        pipeline_id: FromQuery[UUID | None] = None,
        stage_id: FromQuery[UUID | None] = None,
        owner: FromQuery[UUID | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[DealOut]:
        statement = select(Deal).order_by(Deal.created_at.desc(), Deal.id.desc()).limit(limit)
        if pipeline_id:
            statement = statement.where(Deal.pipeline_id == pipeline_id)
        if stage_id:
            statement = statement.where(Deal.stage_id == stage_id)
        if owner:
            statement = statement.where(Deal.owner_id == owner)
        return [deal_out(d) for d in (await db_session.execute(statement)).scalars()]

    @get("/{deal_id:uuid}", opt={"permission": "crm.deals.read"})
    async def get_deal(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        deal_id: FromPath[UUID],
    ) -> DealOut:
        return deal_out(await service(kernel, db_session, tenant, request).deal(deal_id))

    @patch("/{deal_id:uuid}", opt={"permission": "crm.deals.write"})
    async def update_deal(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        deal_id: FromPath[UUID],
        data: JSONBody[DealPatch],
    ) -> DealOut:
        """Change a deal's fields; ``version`` must be the one you read (409 with the current deal if not)."""
        return deal_out(await service(kernel, db_session, tenant, request).update_deal(deal_id, data))

    @post("/{deal_id:uuid}/move", opt={"permission": "crm.deals.write"}, status_code=200)
    async def move_deal(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        deal_id: FromPath[UUID],
        data: JSONBody[DealMove],
    ) -> DealOut:
        """Drop the deal at ``position`` of ``stage_id``; publishes ``crm.deal.stage_changed`` (and won/lost)."""
        return deal_out(await service(kernel, db_session, tenant, request).move_deal(deal_id, data))

    @delete("/{deal_id:uuid}", opt={"permission": "crm.deals.delete"})
    async def delete_deal(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        deal_id: FromPath[UUID],
    ) -> None:
        await service(kernel, db_session, tenant, request).delete_deal(deal_id)
