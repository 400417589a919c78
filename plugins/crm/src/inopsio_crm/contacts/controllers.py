"""``/api/v1/crm/companies``, ``/api/v1/crm/contacts`` and ``POST /api/v1/crm/leads/{id}/convert``."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import func, select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio_crm.access import viewer_of
from inopsio_crm.contacts.models import Company, Contact
from inopsio_crm.contacts.schemas import (
    CompanyIn,
    CompanyOut,
    CompanyPatch,
    ContactIn,
    ContactOut,
    ContactPatch,
    ConversionOut,
    ConvertIn,
)
from inopsio_crm.contacts.services import ContactService, company_out, company_search, contact_out, contact_search

Search = Annotated[str | None, QueryParameter(max_length=200, description="Part of the name or e-mail")]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]


def service(kernel: Any, db_session: Any, tenant: Any, request: Request[Any, Any, Any]) -> ContactService:
    return ContactService(kernel, db_session, tenant, viewer_of(request, tenant))


class CompanyController(Controller):
    path = "/api/v1/crm/companies"
    tags = ["crm"]

    @get("/", opt={"permission": "crm.contacts.read"})
    async def list_companies(self, db_session: DbSession, q: Search = None, limit: Limit = 100) -> list[CompanyOut]:
        statement = (
            select(Company).where(*company_search(q)).order_by(func.lower(Company.name), Company.id).limit(limit)
        )
        return [company_out(c) for c in (await db_session.execute(statement)).scalars()]

    @post("/", opt={"permission": "crm.contacts.write"})
    async def create_company(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[CompanyIn],
    ) -> CompanyOut:
        return company_out(await service(kernel, db_session, tenant, request).create_company(data))

    @get("/{company_id:uuid}", opt={"permission": "crm.contacts.read"})
    async def get_company(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        company_id: FromPath[UUID],
    ) -> CompanyOut:
        return company_out(await service(kernel, db_session, tenant, request).company(company_id))

    @patch("/{company_id:uuid}", opt={"permission": "crm.contacts.write"})
    async def update_company(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        company_id: FromPath[UUID],
        data: JSONBody[CompanyPatch],
    ) -> CompanyOut:
        return company_out(await service(kernel, db_session, tenant, request).update_company(company_id, data))

    @delete("/{company_id:uuid}", opt={"permission": "crm.contacts.delete"})
    async def delete_company(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        company_id: FromPath[UUID],
    ) -> None:
        await service(kernel, db_session, tenant, request).delete_company(company_id)


class ContactController(Controller):
    path = "/api/v1/crm/contacts"
    tags = ["crm"]

    @get("/", opt={"permission": "crm.contacts.read"})
    async def list_contacts(
        self,
        db_session: DbSession,
        q: Search = None,
        company_id: FromQuery[UUID | None] = None,
        limit: Limit = 100,
    ) -> list[ContactOut]:
        statement = (
            select(Contact)
            .where(*contact_search(q, company_id))
            .order_by(func.lower(Contact.name), Contact.id)
            .limit(limit)
        )
        return [contact_out(c) for c in (await db_session.execute(statement)).scalars()]

    @post("/", opt={"permission": "crm.contacts.write"})
    async def create_contact(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        data: JSONBody[ContactIn],
    ) -> ContactOut:
        return contact_out(await service(kernel, db_session, tenant, request).create_contact(data))

    @get("/{contact_id:uuid}", opt={"permission": "crm.contacts.read"})
    async def get_contact(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        contact_id: FromPath[UUID],
    ) -> ContactOut:
        return contact_out(await service(kernel, db_session, tenant, request).contact(contact_id))

    @patch("/{contact_id:uuid}", opt={"permission": "crm.contacts.write"})
    async def update_contact(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        contact_id: FromPath[UUID],
        data: JSONBody[ContactPatch],
    ) -> ContactOut:
        return contact_out(await service(kernel, db_session, tenant, request).update_contact(contact_id, data))

    @delete("/{contact_id:uuid}", opt={"permission": "crm.contacts.delete"})
    async def delete_contact(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        db_session: DbSession,
        contact_id: FromPath[UUID],
    ) -> None:
        await service(kernel, db_session, tenant, request).delete_contact(contact_id)


@post(
    "/api/v1/crm/leads/{lead_id:uuid}/convert", opt={"permission": "crm.contacts.write"}, tags=["crm"], status_code=200
)
async def convert_lead(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    tenant: CurrentTenant,
    db_session: DbSession,
    lead_id: FromPath[UUID],
    data: JSONBody[ConvertIn],
) -> ConversionOut:
    """Turn a lead into a contact, its company (found by name or created) and a deal, all or nothing."""
    return await service(kernel, db_session, tenant, request).convert(lead_id, data)
