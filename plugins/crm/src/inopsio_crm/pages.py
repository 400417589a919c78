"""The CRM's pages in the web shell: the lead list and a lead's timeline, the pipeline board, a
dashboard card (contacts and companies: ``contacts/pages.py``; the import wizard:
``leads/import_pages.py``). Pages only read; every change goes through the JSON API (shell.js, board.js)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect
from sqlalchemy import select

from inopsio.deps import CurrentTenant, DbReader, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio.web import fragment, page
from inopsio_crm.access import has_permission, viewer_of
from inopsio_crm.contacts.models import Contact
from inopsio_crm.contacts.services import ContactService
from inopsio_crm.leads.listing import LeadFilters, LeadList
from inopsio_crm.leads.models import LEAD_STATUSES
from inopsio_crm.leads.services import LeadService
from inopsio_crm.pipeline.models import Pipeline
from inopsio_crm.pipeline.services import PipelineService


@get("/crm/leads", opt={"permission": "crm.leads.read"}, include_in_schema=False)
async def leads_page(
    request: Request[Any, Any, Any],
    tenant: CurrentTenant,
    db_reader: DbReader,
    q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=500)] = None,
) -> Response[str]:
    statuses = [status] if status in LEAD_STATUSES else []
    filters = LeadFilters(q=q, status=statuses)
    leads = await LeadList(db_reader, tenant.id, viewer_of(request, tenant)).page(filters, limit=50, cursor=cursor)
    # The export takes the list's own filters, so it holds exactly the leads this list shows.
    export_query = urlencode({k: v for k, v in {"q": q, "status": statuses[0] if statuses else None}.items() if v})
    return await page(
        request,
        "crm/leads.html",
        {
            "leads": leads,
            "q": q or "",
            "status": status or "",
            "statuses": LEAD_STATUSES,
            "export_query": export_query,
        },
    )


@get("/crm/leads/{lead_id:uuid}", opt={"permission": "crm.leads.read"}, include_in_schema=False)
async def lead_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    lead_id: FromPath[UUID],
) -> Response[str]:
    """A lead: fields, timeline, a note form; converting it, or the contact and deals it became."""
    viewer = viewer_of(request, tenant)
    service = LeadService(kernel, db_session, tenant, viewer)
    lead = await service.get(lead_id)
    timeline = await service.timeline(lead_id)
    contacts: list[Contact] = []
    if has_permission(request, tenant, "crm.contacts.read"):
        contacts = list(
            (await db_session.execute(select(Contact).where(Contact.lead_id == lead.id).order_by(Contact.created_at)))
            .scalars()
            .all()
        )
    pipelines = PipelineService(kernel, db_session, tenant, viewer)
    can_convert = lead.status != "converted" and has_permission(request, tenant, "crm.contacts.write")
    deals = await pipelines.linked_deals(lead_id=lead.id) if has_permission(request, tenant, "crm.deals.read") else None
    return await page(
        request,
        "crm/lead.html",
        {
            "lead": lead,
            "timeline": timeline,
            "contacts": contacts,
            "deals": deals,
            "pipelines": await pipelines.list_pipelines() if can_convert else [],
        },
    )


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
    companies: dict[UUID, str] = {}
    contacts: dict[UUID, str] = {}
    if has_permission(request, tenant, "crm.contacts.read"):  # each card links to its company and contact
        deals = [deal for column in board.columns for deal in column.deals]
        names = ContactService(kernel, db_session, tenant, service.viewer)
        companies = await names.company_names({d.company_id for d in deals if d.company_id})
        contacts = await names.contact_names({d.contact_id for d in deals if d.contact_id})
    return await page(
        request,
        "crm/board.html",
        {"board": board, "metrics": metrics, "pipelines": pipelines, "companies": companies, "contacts": contacts},
    )


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
