"""``/api/v1/crm/imports`` (CSV upload → mapping → preview → job → report) and the lead export."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import xlsxwriter
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.orm import undefer

from inopsio.deps import CurrentTenant, DbReader, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio_crm.access import viewer_of
from inopsio_crm.leads.controllers import provide_lead_filters
from inopsio_crm.leads.imports import (
    check_mapping,
    check_row,
    decode,
    guess_mapping,
    neutralise,
    parse_file,
    reader,
    rejects_csv,
    row_context,
)
from inopsio_crm.leads.listing import LIST_COLUMNS, LeadFilters, LeadList, lead_conditions, leads
from inopsio_crm.leads.models import CustomField, LeadImport

EXPORT_LIMIT = 200_000
EXPORT_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "company",
    "title",
    "source",
    "status",
    "owner_id",
    "estimated_value",
    "currency",
    "tags",
    "created_at",
    "updated_at",
)


class ImportOut(msgspec.Struct, kw_only=True):
    id: UUID
    filename: str
    status: str
    encoding: str
    delimiter: str
    header: list[str]
    #: Column index (as text) → target; guessed at upload, replaced by the one the import ran with.
    mapping: dict[str, str]
    total_rows: int
    created: int
    updated: int
    skipped: int
    rejected: int
    duplicate_policy: str
    all_or_nothing: bool
    job_id: str | None
    error: str | None


class PreviewIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mapping: dict[str, str] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20


class PreviewRow(msgspec.Struct, kw_only=True):
    line: int
    values: dict[str, Any]
    errors: list[str]


class StartIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mapping: dict[str, str] | None = None
    duplicate_policy: Literal["skip", "update", "create"] = "skip"
    #: Import nothing if any row is rejected (otherwise the valid rows are imported and the rest reported).
    all_or_nothing: bool = False


class ImportStarted(msgspec.Struct, kw_only=True):
    import_id: UUID
    #: Follow it at ``GET /api/v1/jobs/{job_id}`` (progress 0-100).
    job_id: str


def import_out(record: LeadImport) -> ImportOut:
    return ImportOut(
        id=record.id,
        filename=record.filename,
        status=record.status,
        encoding=record.encoding,
        delimiter=record.delimiter,
        header=list(record.header),
        mapping=dict(record.mapping),
        total_rows=record.total_rows,
        created=record.created,
        updated=record.updated,
        skipped=record.skipped,
        rejected=record.rejected,
        duplicate_policy=record.duplicate_policy,
        all_or_nothing=record.all_or_nothing,
        job_id=record.job_id,
        error=record.error,
    )


async def _read_upload(request: Request[Any, Any, Any], kernel: Any, tenant: Any) -> bytes:
    """The body, refused (413) as soon as it passes the tenant's upload quota, however large it is."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        kernel.quotas.check_upload(tenant, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        kernel.quotas.check_upload(tenant, size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _custom_fields(db_session: Any) -> dict[str, CustomField]:
    return {f.key: f for f in (await db_session.execute(select(CustomField))).scalars()}


class ImportController(Controller):
    path = "/api/v1/crm/imports"
    tags = ["crm"]

    @post("/", opt={"permission": "crm.leads.import"}, request_max_body_size=None)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        filename: Annotated[str, QueryParameter(max_length=255)] = "",
    ) -> ImportOut:
        """Upload a CSV file as the request body (``Content-Type: text/csv``); answers with the detected
        encoding and delimiter, the header and a guessed column mapping."""
        content = await _read_upload(request, kernel, tenant)
        parsed = parse_file(content)
        viewer = viewer_of(request, tenant)
        record = LeadImport(
            filename=filename,
            content=content,
            encoding=parsed.encoding,
            delimiter=parsed.delimiter,
            header=parsed.header,
            mapping=guess_mapping(parsed.header, await _custom_fields(db_session)),
            total_rows=parsed.rows,
            created_by=viewer.user_id,
            rejects=[],
        )
        db_session.add(record)
        await db_session.flush()
        return import_out(record)

    @get("/{import_id:uuid}", opt={"permission": "crm.leads.import"})
    async def get_import(self, db_session: DbSession, import_id: FromPath[UUID]) -> ImportOut:
        return import_out(await find_import(db_session, import_id))

    @post("/{import_id:uuid}/preview", opt={"permission": "crm.leads.import"}, status_code=200)
    async def preview(
        self, tenant: CurrentTenant, db_session: DbSession, import_id: FromPath[UUID], data: JSONBody[PreviewIn]
    ) -> list[PreviewRow]:
        """The first rows as they would be imported with ``mapping`` (or the guessed one), each with its errors."""
        record = await find_import(db_session, import_id, content=True)
        fields = await _custom_fields(db_session)
        mapping = data.mapping if data.mapping is not None else record.mapping
        check_mapping(mapping, record.header, fields)
        ctx = await row_context(db_session, tenant)
        rows = reader(decode(record.content)[0], record.delimiter)
        next(rows)
        preview: list[PreviewRow] = []
        for line, row in enumerate(rows, start=2):
            if len(preview) >= data.limit:
                break
            checked = check_row(row, mapping, ctx)
            preview.append(PreviewRow(line=line, values=msgspec.to_builtins(checked.values), errors=checked.errors))
        return preview

    @post("/{import_id:uuid}/start", opt={"permission": "crm.leads.import"}, status_code=202)
    async def start(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        import_id: FromPath[UUID],
        data: JSONBody[StartIn],
    ) -> ImportStarted:
        """Queue the import as a background job."""
        record = await find_import(db_session, import_id, for_update=True)
        if record.status != "uploaded":
            raise Problem(409, "import-started", f"This import is {record.status} already.")
        mapping = data.mapping if data.mapping is not None else record.mapping
        check_mapping(mapping, record.header, await _custom_fields(db_session))
        record.mapping = mapping
        record.duplicate_policy = data.duplicate_policy
        record.all_or_nothing = data.all_or_nothing
        record.status = "queued"
        record.job_id = f"crm-import:{record.id}"
        await db_session.flush()
        job_id = await kernel.jobs.enqueue(
            "crm.import_leads", tenant_id=tenant.id, import_id=str(record.id), _job_id=record.job_id
        )
        if job_id:  # the queue's own id (namespaced), the one GET /api/v1/jobs/{job_id} knows
            record.job_id = job_id
            await db_session.flush()
        return ImportStarted(import_id=record.id, job_id=record.job_id)

    @get("/{import_id:uuid}/rejects.csv", opt={"permission": "crm.leads.import"}, media_type="text/csv")
    async def rejected_rows(self, db_session: DbSession, import_id: FromPath[UUID]) -> Response[str]:
        """The rows that were not imported, as in the file, with a column saying why."""
        record = await find_import(db_session, import_id, rejects=True)
        return Response(
            rejects_csv(record),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="rejected-{record.id}.csv"'},
        )


async def find_import(
    db_session: Any, import_id: UUID, *, content: bool = False, rejects: bool = False, for_update: bool = False
) -> LeadImport:
    statement = select(LeadImport).where(LeadImport.id == import_id)
    if content:
        statement = statement.options(undefer(LeadImport.content))
    if rejects:
        statement = statement.options(undefer(LeadImport.rejects))
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    record = (await db_session.execute(statement)).scalar_one_or_none()
    if record is None:
        raise Problem(404, "not-found", "No such import.")
    return record


def _cells(lead: Any) -> list[Any]:
    row: list[Any] = []
    for column in EXPORT_COLUMNS:
        value = getattr(lead, column)
        if column == "tags":
            value = ", ".join(value)
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            value = value.isoformat() if hasattr(value, "isoformat") else str(value)
        row.append(neutralise(value))
    return row


@get(
    "/api/v1/crm/leads/export",
    opt={"permission": "crm.leads.export"},
    tags=["crm"],
    dependencies={"filters": Provide(provide_lead_filters)},
)
async def export_leads(
    request: Request[Any, Any, Any],
    tenant: CurrentTenant,
    db_reader: DbReader,
    filters: NamedDependency[LeadFilters],
    format: Annotated[Literal["csv", "xlsx"], QueryParameter(description="csv or xlsx")] = "csv",
) -> Response[bytes]:
    """The filtered lead list (same filters as the list) as CSV or XLSX; cells that a spreadsheet would
    run as formulas (starting with = + - @) are prefixed with ``'``."""
    viewer = viewer_of(request, tenant)
    search = await LeadList(db_reader, tenant.id, viewer).search(filters)
    found = []
    if search is None or search.count:
        statement = (
            select(*LIST_COLUMNS)
            .where(*lead_conditions(tenant.id, viewer, filters, search))
            .order_by(leads.created_at, leads.id)
            .limit(EXPORT_LIMIT)
        )
        found = list(await db_reader.all(statement))
    fields = CustomField.__table__.c
    custom_keys = sorted(await db_reader.scalars(select(fields.key)))
    header = [*EXPORT_COLUMNS, *(f"custom.{k}" for k in custom_keys)]
    rows = ([*_cells(lead), *(neutralise(_text(lead.custom.get(k))) for k in custom_keys)] for lead in found)
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        body, media_type = out.getvalue().encode("utf-8-sig"), "text/csv; charset=utf-8"
    else:
        buffer = io.BytesIO()
        workbook = xlsxwriter.Workbook(
            buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
        )
        sheet = workbook.add_worksheet("Leads")
        sheet.write_row(0, 0, header)
        for index, row in enumerate(rows, start=1):
            for column, value in enumerate(row):
                sheet.write_string(index, column, str(value))
        workbook.close()
        body = buffer.getvalue()
        media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="leads.{format}"'}
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
