"""The company and contact pages: lists (search, keyset pages), a page per record with its contacts,
deals and lead, and the forms that create, edit and delete them through the JSON API (shell.js)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio.identity.models import Membership, User
from inopsio.web import page
from inopsio_crm.access import has_permission, viewer_of
from inopsio_crm.contacts.models import Company, Contact
from inopsio_crm.contacts.services import ContactService
from inopsio_crm.leads.models import Lead
from inopsio_crm.leads.services import LeadService
from inopsio_crm.pipeline.services import LinkedDeal, PipelineService

PAGE_SIZE = 50
#: A company page lists this many of its contacts, then links to the contact list filtered by it.
COMPANY_CONTACTS = 100
#: Companies offered in a select box (contact forms, the contact list's filter); past that, the
#: contact list is filtered from the company's own page.
COMPANY_CHOICES = 300

Search = Annotated[str | None, QueryParameter(max_length=200)]
Cursor = Annotated[str | None, QueryParameter(max_length=500)]


def _service(request: Request[Any, Any, Any], kernel: Any, tenant: Any, db_session: AsyncSession) -> ContactService:
    return ContactService(kernel, db_session, tenant, viewer_of(request, tenant))


async def tenant_members(session: AsyncSession, tenant_id: UUID) -> dict[UUID, str]:
    """The tenant's members (for owner select boxes and names), by name."""
    rows = await session.execute(
        select(User.id, User.name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id)
        .order_by(func.lower(func.coalesce(func.nullif(User.name, ""), User.email)))
    )
    return {user_id: name or email for user_id, name, email in rows.tuples()}


async def company_choices(session: AsyncSession, selected: UUID | None = None) -> list[tuple[UUID, str]]:
    """Companies for a select box: the first ones by name, and the selected one wherever it sorts."""
    rows = list(
        (
            await session.execute(
                select(Company.id, Company.name).order_by(func.lower(Company.name), Company.id).limit(COMPANY_CHOICES)
            )
        ).tuples()
    )
    if selected is not None and all(company_id != selected for company_id, _ in rows):
        chosen = (await session.execute(select(Company.id, Company.name).where(Company.id == selected))).tuples()
        rows = [*chosen, *rows]
    return [(company_id, name) for company_id, name in rows]


async def _deals(
    request: Request[Any, Any, Any],
    kernel: Any,
    tenant: Any,
    db_session: AsyncSession,
    *,
    company_id: UUID | None = None,
    contact_id: UUID | None = None,
) -> list[LinkedDeal] | None:
    """The record's deals, or ``None`` for someone who may not see deals (the section is left out)."""
    if not has_permission(request, tenant, "crm.deals.read"):
        return None
    service = PipelineService(kernel, db_session, tenant, viewer_of(request, tenant))
    return await service.linked_deals(company_id=company_id, contact_id=contact_id)


# -- companies ------------------------------------------------------------------------------------


@get("/crm/companies", opt={"permission": "crm.contacts.read"}, include_in_schema=False)
async def companies_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    q: Search = None,
    cursor: Cursor = None,
) -> Response[str]:
    service = _service(request, kernel, tenant, db_session)
    companies, next_cursor = await service.company_page(q, limit=PAGE_SIZE, cursor=cursor)
    counts: dict[UUID, int] = {}
    if companies:
        rows = await db_session.execute(
            select(Contact.company_id, func.count())
            .where(Contact.company_id.in_([c.id for c in companies]))
            .group_by(Contact.company_id)
        )
        counts = {company_id: count for company_id, count in rows.tuples() if company_id is not None}
    return await page(
        request,
        "crm/companies.html",
        {
            "title": "Companies",
            "companies": companies,
            "contact_counts": counts,
            "q": q or "",
            "next_cursor": next_cursor,
            "first_page": cursor is None,
        },
    )


@get("/crm/companies/{company_id:uuid}", opt={"permission": "crm.contacts.read"}, include_in_schema=False)
async def company_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    company_id: FromPath[UUID],
) -> Response[str]:
    """A company: its fields, contacts and deals; edit and delete for those allowed."""
    service = _service(request, kernel, tenant, db_session)
    company = await service.company(company_id)
    contacts, more = await service.contact_page(company_id=company.id, limit=COMPANY_CONTACTS)
    total_contacts = len(contacts)
    if more:
        total_contacts = (
            await db_session.execute(select(func.count()).where(Contact.company_id == company.id))
        ).scalar_one()
    return await page(
        request,
        "crm/company.html",
        {
            "title": company.name,
            "company": company,
            "contacts": contacts,
            "total_contacts": total_contacts,
            "deals": await _deals(request, kernel, tenant, db_session, company_id=company.id),
            "members": await tenant_members(db_session, tenant.id),
        },
    )


# -- contacts -------------------------------------------------------------------------------------


@get("/crm/contacts", opt={"permission": "crm.contacts.read"}, include_in_schema=False)
async def contacts_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    q: Search = None,
    company: Annotated[str | None, QueryParameter(query="company_id", max_length=36)] = None,
    cursor: Cursor = None,
) -> Response[str]:
    """Contacts by name; ``company_id`` as the filter's select box sends it (empty: any company)."""
    try:
        company_id = UUID(company) if company else None
    except ValueError:
        raise Problem(
            400,
            "invalid-filter",
            "The company filter is not a company's id.",
            errors=[{"pointer": "/company_id", "source": "query", "detail": "not an id"}],
        ) from None
    service = _service(request, kernel, tenant, db_session)
    contacts, next_cursor = await service.contact_page(q, company_id, limit=PAGE_SIZE, cursor=cursor)
    company_names = await service.company_names({c.company_id for c in contacts if c.company_id})
    return await page(
        request,
        "crm/contacts.html",
        {
            "title": "Contacts",
            "contacts": contacts,
            "company_names": company_names,
            "companies": await company_choices(db_session, company_id),
            "company_id": company_id,
            "q": q or "",
            "next_cursor": next_cursor,
            "first_page": cursor is None,
        },
    )


@get("/crm/contacts/{contact_id:uuid}", opt={"permission": "crm.contacts.read"}, include_in_schema=False)
async def contact_page(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    contact_id: FromPath[UUID],
) -> Response[str]:
    """A contact: fields, company, the lead it came from, deals; edit and delete for those allowed."""
    service = _service(request, kernel, tenant, db_session)
    contact = await service.contact(contact_id)
    company = await service.company(contact.company_id) if contact.company_id else None
    lead: Lead | None = None
    if contact.lead_id and has_permission(request, tenant, "crm.leads.read"):
        try:  # only a lead this viewer may see is linked
            lead = await LeadService(kernel, db_session, tenant, service.viewer).get(contact.lead_id)
        except Problem:
            lead = None
    return await page(
        request,
        "crm/contact.html",
        {
            "title": contact.name,
            "contact": contact,
            "company": company,
            "lead": lead,
            "deals": await _deals(request, kernel, tenant, db_session, contact_id=contact.id),
            "members": await tenant_members(db_session, tenant.id),
            "companies": await company_choices(db_session, contact.company_id),
        },
    )
