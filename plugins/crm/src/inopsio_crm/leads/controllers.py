"""``/api/v1/crm/leads``, ``/api/v1/crm/custom-fields`` and ``/api/v1/crm/assignment-rule``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from inopsio.db.reader import TenantReader
from inopsio.deps import CurrentTenant, DbReader, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio_crm.access import viewer_of
from inopsio_crm.leads.listing import LeadFilters, LeadList, lead_out
from inopsio_crm.leads.models import AssignmentRule, CustomField, Lead
from inopsio_crm.leads.schemas import (
    ActivityOut,
    AssignIn,
    AssignmentRuleIn,
    AssignmentRuleOut,
    BulkAssignIn,
    BulkAssignOut,
    CustomFieldIn,
    CustomFieldOut,
    CustomFieldPatch,
    DuplicateMatch,
    LeadIn,
    LeadOut,
    LeadPage,
    LeadPatch,
    MergeIn,
    NoteIn,
)
from inopsio_crm.leads.services import LeadService, activity_out
from inopsio_crm.leads.validation import FieldErrors

AllowDuplicate = Annotated[bool, QueryParameter(description="Store the lead even if it looks like an existing one")]
CUSTOM_PREFIX = "cf."


def service(kernel: Any, db_session: Any, tenant: Any, request: Request[Any, Any, Any]) -> LeadService:
    return LeadService(kernel, db_session, tenant, viewer_of(request, tenant))


def _query_error(name: str, detail: str) -> Problem:
    return Problem(
        400,
        "invalid-filter",
        f"The filter {name} is not valid: {detail}.",
        errors=[{"pointer": f"/{name}", "source": "query", "detail": detail}],
    )


def _custom_value(field: Any, raw: str, name: str) -> Any:
    if field.type == "number":
        try:
            number = float(raw)
        except ValueError:
            raise _query_error(name, "not a number") from None
        return int(number) if number.is_integer() else number
    if field.type == "boolean":
        if raw not in ("true", "false"):
            raise _query_error(name, "use true or false")
        return raw == "true"
    if field.type == "date":
        try:
            return dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            raise _query_error(name, "use a date like 2026-11-25") from None
    return raw


async def custom_filters(
    db_reader: TenantReader, request: Request[Any, Any, Any]
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """``?cf.industry=Retail`` (equality) and ``?cf.employees.min=10&cf.employees.max=50`` (ranges)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k.startswith(CUSTOM_PREFIX)]
    if not params:
        return {}, {}
    columns = CustomField.__table__.c
    fields = {f.key: f for f in await db_reader.all(select(columns.key, columns.type))}
    equals: dict[str, Any] = {}
    ranges: dict[str, list[Any]] = {}
    for name, raw in params:
        key, _, bound = name.removeprefix(CUSTOM_PREFIX).partition(".")
        field = fields.get(key)
        if field is None:
            raise _query_error(name, "no such custom field")
        value = _custom_value(field, raw, name)
        if not bound:
            equals[key] = value
        elif bound in ("min", "max") and field.type in ("number", "date"):
            ranges.setdefault(key, [None, None])[0 if bound == "min" else 1] = value
        else:
            raise _query_error(name, "ranges (.min, .max) apply to number and date fields")
    return equals, {k: (v[0], v[1]) for k, v in ranges.items()}


async def provide_lead_filters(
    request: Request[Any, Any, Any],
    db_reader: DbReader,
    q: Annotated[str | None, QueryParameter(max_length=200, description="Full-text search")] = None,
    status: Annotated[list[str] | None, QueryParameter(description="One or more statuses")] = None,
    owner: Annotated[
        str | None, QueryParameter(description="A user id, me, or none (unassigned)", max_length=36)
    ] = None,
    source: Annotated[str | None, QueryParameter(max_length=50)] = None,
    tag: Annotated[list[str] | None, QueryParameter(description="Leads carrying every tag given")] = None,
    created_from: FromQuery[dt.datetime | None] = None,
    created_to: FromQuery[dt.datetime | None] = None,
    value_min: FromQuery[Decimal | None] = None,
    value_max: FromQuery[Decimal | None] = None,
    deleted: Annotated[bool, QueryParameter(description="List the bin (deleted, restorable)")] = False,
) -> LeadFilters:
    """The lead list's filters from the query string (shared by the list and the export)."""
    if owner not in (None, "me", "none"):
        try:
            UUID(owner)
        except ValueError:
            raise _query_error("owner", "use a user id, me or none") from None
    equals, ranges = await custom_filters(db_reader, request)
    return LeadFilters(
        q=q,
        status=status or (),
        owner=owner,
        source=source,
        tags=tag or (),
        created_from=created_from,
        created_to=created_to,
        value_min=value_min,
        value_max=value_max,
        custom_equals=equals,
        custom_ranges=ranges,
        deleted=deleted,
    )


class LeadController(Controller):
    path = "/api/v1/crm/leads"
    tags = ["crm"]

    @post("/", opt={"permission": "crm.leads.write"})
    async def create_lead(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[LeadIn],
        allow_duplicate: AllowDuplicate = False,
    ) -> LeadOut:
        """Create a lead; 409 ``possible-duplicate`` with the matching leads unless ``allow_duplicate``."""
        lead = await service(kernel, db_session, tenant, request).create(data, allow_duplicate=allow_duplicate)
        return lead_out(lead)

    @get("/", opt={"permission": "crm.leads.read"}, dependencies={"filters": Provide(provide_lead_filters)})
    async def list_leads(
        self,
        request: Request[Any, Any, Any],
        tenant: CurrentTenant,
        db_reader: DbReader,
        filters: NamedDependency[LeadFilters],
        sort: Annotated[str, QueryParameter(max_length=20)] = "-created_at",
        cursor: Annotated[str | None, QueryParameter(max_length=500)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> LeadPage:
        """The viewer's leads, filtered (``cf.<key>=`` for custom fields), sorted, a page at a time."""
        leads = LeadList(db_reader, tenant.id, viewer_of(request, tenant))
        return await leads.page(filters, sort=sort, limit=limit, cursor=cursor)

    @post("/assign", opt={"permission": "crm.leads.assign"}, status_code=200)
    async def bulk_assign(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[BulkAssignIn],
    ) -> BulkAssignOut:
        """Give many leads to one member (or unassign them): all or nothing."""
        svc = service(kernel, db_session, tenant, request)
        return BulkAssignOut(assigned=await svc.bulk_assign(data.lead_ids, data.owner_id))

    @get("/{lead_id:uuid}", opt={"permission": "crm.leads.read"})
    async def get_lead(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
    ) -> LeadOut:
        return lead_out(await service(kernel, db_session, tenant, request).get(lead_id))

    @patch("/{lead_id:uuid}", opt={"permission": "crm.leads.write"})
    async def update_lead(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
        data: JSONBody[LeadPatch],
        allow_duplicate: AllowDuplicate = False,
    ) -> LeadOut:
        svc = service(kernel, db_session, tenant, request)
        return lead_out(await svc.update(lead_id, data, allow_duplicate=allow_duplicate))

    @delete("/{lead_id:uuid}", opt={"permission": "crm.leads.delete"}, status_code=200)
    async def delete_lead(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
    ) -> LeadOut:
        """Move the lead to the bin: ``POST .../restore`` brings it back until it is purged."""
        return lead_out(await service(kernel, db_session, tenant, request).delete(lead_id))

    @post("/{lead_id:uuid}/restore", opt={"permission": "crm.leads.delete"}, status_code=200)
    async def restore_lead(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
    ) -> LeadOut:
        return lead_out(await service(kernel, db_session, tenant, request).restore(lead_id))

    @get("/{lead_id:uuid}/activities", opt={"permission": "crm.leads.read"})
    async def timeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
    ) -> list[ActivityOut]:
        """The lead's timeline, newest first: notes, status changes, assignments, merges."""
        return await service(kernel, db_session, tenant, request).timeline(lead_id)

    @post("/{lead_id:uuid}/notes", opt={"permission": "crm.leads.write"})
    async def add_note(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
        data: JSONBody[NoteIn],
    ) -> ActivityOut:
        if not data.body.strip():
            raise Problem(422, "invalid-note", "The note is empty.", errors=[{"pointer": "/body", "detail": "blank"}])
        return activity_out(await service(kernel, db_session, tenant, request).add_note(lead_id, data.body))

    @get("/{lead_id:uuid}/duplicates", opt={"permission": "crm.leads.read"})
    async def duplicates(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
    ) -> list[DuplicateMatch]:
        """Other leads that look like this one (those the viewer may see)."""
        svc = service(kernel, db_session, tenant, request)
        lead = await svc.get(lead_id)
        viewer = svc.viewer
        return [
            DuplicateMatch(lead=lead_out(m.lead), reasons=m.reasons, score=round(m.score, 1))
            for m in await svc.duplicates_of(lead, exclude=[lead.id])
            if viewer.read_all or m.lead.owner_id in (None, viewer.user_id)
        ]

    @post("/{lead_id:uuid}/merge", opt={"permission": "crm.leads.delete"}, status_code=200)
    async def merge(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
        data: JSONBody[MergeIn],
    ) -> LeadOut:
        """Merge ``duplicate_id`` into this lead, keeping both histories in this lead's timeline."""
        return lead_out(await service(kernel, db_session, tenant, request).merge(lead_id, data.duplicate_id))

    @post("/{lead_id:uuid}/assign", opt={"permission": "crm.leads.assign"}, status_code=200)
    async def assign(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        lead_id: FromPath[UUID],
        data: JSONBody[AssignIn],
    ) -> LeadOut:
        return lead_out(await service(kernel, db_session, tenant, request).assign(lead_id, data.owner_id))


def field_out(field: CustomField) -> CustomFieldOut:
    return CustomFieldOut(
        id=field.id,
        key=field.key,
        label=field.label,
        type=field.type,
        choices=list(field.choices),
        required=field.required,
        position=field.position,
    )


def _check_choices(field_type: str, choices: list[str]) -> None:
    errors = FieldErrors()
    if field_type == "choice" and not choices:
        errors.add("/choices", "a choice field needs at least one choice")
    if field_type != "choice" and choices:
        errors.add("/choices", "only choice fields have choices")
    if len(set(choices)) != len(choices):
        errors.add("/choices", "choices must differ")
    errors.raise_if_any("invalid-custom-field", "custom field")


class CustomFieldController(Controller):
    path = "/api/v1/crm/custom-fields"
    tags = ["crm"]

    @get("/", opt={"permission": "crm.leads.read"})
    async def list_fields(self, db_session: DbSession) -> list[CustomFieldOut]:
        rows = await db_session.execute(select(CustomField).order_by(CustomField.position, CustomField.key))
        return [field_out(f) for f in rows.scalars()]

    @post("/", opt={"permission": "crm.custom_fields.write"})
    async def create_field(self, db_session: DbSession, data: JSONBody[CustomFieldIn]) -> CustomFieldOut:
        _check_choices(data.type, data.choices)
        exists = (await db_session.execute(select(CustomField.id).where(CustomField.key == data.key))).first()
        if exists:
            raise Problem(
                409,
                "custom-field-exists",
                f"There is a custom field {data.key!r} already.",
                errors=[{"pointer": "/key", "detail": "taken"}],
            )
        field = CustomField(
            key=data.key,
            label=data.label,
            type=data.type,
            choices=data.choices,
            required=data.required,
            position=data.position,
        )
        db_session.add(field)
        try:
            await db_session.flush()
        except IntegrityError:  # created by a concurrent request
            raise Problem(409, "custom-field-exists", f"There is a custom field {data.key!r} already.") from None
        return field_out(field)

    @patch("/{field_id:uuid}", opt={"permission": "crm.custom_fields.write"})
    async def update_field(
        self, db_session: DbSession, field_id: FromPath[UUID], data: JSONBody[CustomFieldPatch]
    ) -> CustomFieldOut:
        field = await _field(db_session, field_id)
        for name in data.__struct_fields__:
            value = getattr(data, name)
            if value is not msgspec.UNSET:
                setattr(field, name, value)
        _check_choices(field.type, list(field.choices))
        await db_session.flush()
        return field_out(field)

    @delete("/{field_id:uuid}", opt={"permission": "crm.custom_fields.write"})
    async def delete_field(self, db_session: DbSession, field_id: FromPath[UUID]) -> None:
        """Delete the definition and its values on every lead."""
        field = await _field(db_session, field_id)
        await db_session.execute(
            update(Lead)
            .where(Lead.custom.has_key(field.key))
            .values(custom=Lead.custom.op("-", return_type=JSONB)(field.key))
        )
        await db_session.delete(field)


async def _field(db_session: Any, field_id: UUID) -> CustomField:
    field = (await db_session.execute(select(CustomField).where(CustomField.id == field_id))).scalar_one_or_none()
    if field is None:
        raise Problem(404, "not-found", "No such custom field.")
    return field


async def _rule_out(db_session: Any) -> AssignmentRuleOut:
    rule = (await db_session.execute(select(AssignmentRule))).scalar_one_or_none()
    if rule is None:
        return AssignmentRuleOut(enabled=False, member_ids=[], next_member_id=None)
    members = [UUID(m) for m in rule.member_ids]
    upcoming = members[rule.next_index % len(members)] if members and rule.enabled else None
    return AssignmentRuleOut(enabled=rule.enabled, member_ids=members, next_member_id=upcoming)


@get("/api/v1/crm/assignment-rule", opt={"permission": "crm.leads.read"}, tags=["crm"])
async def get_assignment_rule(db_session: DbSession) -> AssignmentRuleOut:
    """The round-robin rule: new leads without an owner go to these members in turn."""
    return await _rule_out(db_session)


@put("/api/v1/crm/assignment-rule", opt={"permission": "crm.leads.assign"}, tags=["crm"])
async def set_assignment_rule(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    data: JSONBody[AssignmentRuleIn],
) -> AssignmentRuleOut:
    svc = service(kernel, db_session, tenant, request)
    errors = FieldErrors()
    members = list(dict.fromkeys(data.member_ids))
    for index, member in enumerate(members):
        await svc.require_member(member, f"/member_ids/{index}", errors)
    if data.enabled and not members:
        errors.add("/member_ids", "an enabled rule needs at least one member")
    errors.raise_if_any("invalid-assignment-rule", "assignment rule")
    rule = (
        await db_session.execute(select(AssignmentRule).with_for_update().execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if rule is None:
        rule = AssignmentRule(tenant_id=tenant.id)
        db_session.add(rule)
    rule.enabled = data.enabled
    rule.member_ids = [str(m) for m in members]
    rule.next_index = 0
    await db_session.flush()
    return await _rule_out(db_session)
