"""The CRM's pages in the web shell: the lead list and a lead's timeline, the pipeline board, a
dashboard card. Pages only read; every change goes through the JSON API (shell.js, board.js)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect
from sqlalchemy import select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio.web import fragment, page
from inopsio_crm.access import viewer_of
from inopsio_crm.leads.models import LEAD_STATUSES
from inopsio_crm.leads.services import LeadFilters, LeadService
from inopsio_crm.pipeline.models import Pipeline
from inopsio_crm.pipeline.services import PipelineService


@get("/crm/leads", opt={"permission": "crm.leads.read"}, include_in_schema=False)
async def leads_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=500)] = None,
) -> Response[str]:
    service = LeadService(kernel, db_session, tenant, viewer_of(request, tenant))
    statuses = [status] if status in LEAD_STATUSES else []
    filters = LeadFilters(q=q, status=statuses)
    leads = await service.list(filters, limit=50, cursor=cursor)
    return await page(
        request,
        "crm/leads.html",
        {"leads": leads, "q": q or "", "status": status or "", "statuses": LEAD_STATUSES},
    )


@get("/crm/leads/{lead_id:uuid}", opt={"permission": "crm.leads.read"}, include_in_schema=False)
async def lead_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    lead_id: FromPath[UUID],
) -> Response[str]:
    service = LeadService(kernel, db_session, tenant, viewer_of(request, tenant))
    lead = await service.get(lead_id)
    timeline = await service.timeline(lead_id)
    return await page(request, "crm/lead.html", {"lead": lead, "timeline": timeline})


async def _first_pipeline(db_session: Any) -> UUID:
    pipeline_id = (
        await db_session.execute(select(Pipeline.id).order_by(Pipeline.position, Pipeline.id).limit(1))
    ).scalar_one_or_none()
    if pipeline_id is None:
        raise Problem(404, "not-found", "There is no pipeline yet.")
    return pipeline_id  # type: ignore[no-any-return]


@get("/crm/pipeline", opt={"permission": "crm.deals.read"}, include_in_schema=False)
async def pipeline_page(db_session: DbSession) -> Redirect:
    """The first pipeline's board."""
    return Redirect(f"/crm/pipelines/{await _first_pipeline(db_session)}", status_code=303)


@get("/crm/pipelines/{pipeline_id:uuid}", opt={"permission": "crm.deals.read"}, include_in_schema=False)
async def board_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    pipeline_id: FromPath[UUID],
) -> Response[str]:
    """The kanban board: each deal can be moved with its buttons (keyboard) and follows others' moves live."""
    service = PipelineService(kernel, db_session, tenant, viewer_of(request, tenant))
    board = await service.board(pipeline_id)
    metrics = await service.metrics(pipeline_id)
    pipelines = await service.list_pipelines()
    return await page(request, "crm/board.html", {"board": board, "metrics": metrics, "pipelines": pipelines})


@get("/crm/cards/pipeline", opt={"permission": "crm.deals.read"}, include_in_schema=False)
async def pipeline_card(
    request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, db_session: DbSession
) -> Response[str]:
    service = PipelineService(kernel, db_session, tenant, viewer_of(request, tenant))
    metrics = await service.metrics(await _first_pipeline(db_session))
    open_stages = [s for s in metrics.stages if s.kind == "open"]
    weighted: dict[str, Any] = {}
    for stage in open_stages:
        for currency, value in stage.weighted_value.items():
            weighted[currency] = weighted.get(currency, 0) + value
    return await fragment(
        request,
        "crm/card.html",
        {"open_deals": sum(s.count for s in open_stages), "weighted": weighted, "win_rate": metrics.win_rate},
    )
