"""The CSV import wizard: upload, map the columns, preview, choose the duplicate policy, start, follow
the job, read the report. The pages read an import's state; ``import.js`` drives the import API
(``/api/v1/crm/imports``) and the kernel's job status (``/api/v1/jobs/{id}``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromPath
from sqlalchemy import func, select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.web import page
from inopsio_crm.access import viewer_of
from inopsio_crm.leads.imports import TARGET_LABELS, TARGETS, sample_rows
from inopsio_crm.leads.models import DUPLICATE_POLICIES, LeadImport
from inopsio_crm.leads.services import LeadService
from inopsio_crm.leads.transfer_controllers import find_import

#: Enough of the file's start for a few sample rows beside the mapping.
SAMPLE_BYTES = 64 * 1024
#: Rejected rows shown on the report page; all of them are in the downloadable CSV.
REPORT_REJECTS = 50
RECENT_IMPORTS = 20


@get("/crm/leads/import", opt={"permission": "crm.leads.import"}, include_in_schema=False)
async def import_page(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    """Step 1: upload a file; and the recent imports of the tenant."""
    recent = (
        await db_session.execute(
            select(LeadImport).order_by(LeadImport.created_at.desc(), LeadImport.id.desc()).limit(RECENT_IMPORTS)
        )
    ).scalars()
    return await page(request, "crm/import.html", {"title": "Import leads", "imports": list(recent)})


@get("/crm/leads/import/{import_id:uuid}", opt={"permission": "crm.leads.import"}, include_in_schema=False)
async def import_step_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    import_id: FromPath[UUID],
) -> Response[str]:
    """The import's next step: mapping and preview (uploaded), progress (queued, running) or the report."""
    record = await find_import(db_session, import_id)
    context: dict[str, Any] = {"title": f"Import {record.filename or 'of leads'}", "record": record}
    if record.status == "uploaded":
        head = (
            await db_session.execute(
                select(func.substring(LeadImport.content, 1, SAMPLE_BYTES), func.length(LeadImport.content)).where(
                    LeadImport.id == record.id
                )
            )
        ).one()
        fields = await LeadService(kernel, db_session, tenant, viewer_of(request, tenant)).custom_fields()
        context["samples"] = sample_rows(
            bytes(head[0]), record.encoding, record.delimiter, whole=head[1] <= SAMPLE_BYTES
        )
        context["targets"] = [
            *((target, TARGET_LABELS[target]) for target in TARGETS),
            *((f"custom.{key}", f"{field.label} (custom field)") for key, field in fields.items()),
        ]
        context["policies"] = DUPLICATE_POLICIES
    elif record.status in ("done", "failed"):
        rejects = (await db_session.execute(select(LeadImport.rejects).where(LeadImport.id == record.id))).scalar_one()
        context["rejects"] = list(rejects or [])[:REPORT_REJECTS]
    return await page(request, "crm/import_step.html", context)
