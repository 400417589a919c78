"""Contacts and companies, and converting a lead into contact + company + deal in one transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import ColumnElement, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.errors import Problem
from inopsio.tenancy.schemas import TenantInfo
from inopsio_crm.access import Viewer
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
from inopsio_crm.events import LeadConverted
from inopsio_crm.leads.listing import decode_cursor, encode_cursor, lead_out
from inopsio_crm.leads.services import LeadService
from inopsio_crm.leads.validation import FieldErrors, clean_tags, default_phone_region, normalise_email, normalise_phone
from inopsio_crm.pipeline.models import Deal
from inopsio_crm.pipeline.schemas import DealIn
from inopsio_crm.pipeline.services import PipelineService, deal_out

#: The cursor tags of the two name-ordered lists: a cursor of one list is refused by the other.
COMPANY_CURSOR = "company-name"
CONTACT_CURSOR = "contact-name"


def like_pattern(q: str) -> str:
    """``q`` anywhere in a lower-cased column, its LIKE wildcards taken literally (escape ``\\``)."""
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def company_search(q: str | None) -> list[ColumnElement[bool]]:
    return [func.lower(Company.name).like(like_pattern(q), escape="\\")] if q else []


def contact_search(q: str | None, company_id: UUID | None = None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if q:
        pattern = like_pattern(q)
        conditions.append(
            or_(
                func.lower(Contact.name).like(pattern, escape="\\"),
                func.lower(Contact.email).like(pattern, escape="\\"),
            )
        )
    if company_id:
        conditions.append(Contact.company_id == company_id)
    return conditions


def company_out(company: Company) -> CompanyOut:
    return CompanyOut(
        id=company.id,
        name=company.name,
        domain=company.domain,
        phone=company.phone,
        address=company.address,
        owner_id=company.owner_id,
        tags=list(company.tags),
        created_at=company.created_at,
        updated_at=company.updated_at,
    )


def contact_out(contact: Contact) -> ContactOut:
    return ContactOut(
        id=contact.id,
        name=contact.name,
        email=contact.email,
        phone=contact.phone,
        title=contact.title,
        company_id=contact.company_id,
        owner_id=contact.owner_id,
        lead_id=contact.lead_id,
        tags=list(contact.tags),
        created_at=contact.created_at,
        updated_at=contact.updated_at,
    )


class ContactService:
    def __init__(self, kernel: Any, session: AsyncSession, tenant: TenantInfo, viewer: Viewer) -> None:
        self.kernel = kernel
        self.session = session
        self.tenant = tenant
        self.viewer = viewer
        self.leads = LeadService(kernel, session, tenant, viewer)

    def _region(self) -> str | None:
        return default_phone_region(self.tenant.settings.locale)

    async def _check_company(self, company_id: UUID | None, errors: FieldErrors) -> None:
        if (
            company_id is not None
            and (await self.session.execute(select(Company.id).where(Company.id == company_id))).first() is None
        ):
            errors.add("/company_id", "no such record")

    async def _name_page(
        self, entity: Any, conditions: list[ColumnElement[bool]], tag: str, limit: int, cursor: str | None
    ) -> tuple[list[Any], str | None]:
        """Rows ordered by lower-cased name, ``limit`` at a time after ``cursor`` (keyset: (name, id))."""
        key = func.lower(entity.name)
        # The key as PostgreSQL lower-cases it (not Python), so the next page starts exactly after it.
        statement = select(entity, key).where(*conditions)
        if cursor:
            name, last_id = decode_cursor(cursor, tag)
            statement = statement.where(tuple_(key, entity.id) > tuple_(name, last_id))
        rows = list((await self.session.execute(statement.order_by(key, entity.id).limit(limit + 1))).tuples())
        if len(rows) <= limit:
            return [row for row, _ in rows], None
        last, last_key = rows[limit - 1]
        return [row for row, _ in rows[:limit]], encode_cursor(tag, last_key, last.id)

    async def company_page(
        self, q: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Company], str | None]:
        """Companies by name (``q``: part of it), a page at a time, and the cursor of the next page."""
        return await self._name_page(Company, company_search(q), COMPANY_CURSOR, limit, cursor)

    async def contact_page(
        self, q: str | None = None, company_id: UUID | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Contact], str | None]:
        """Contacts by name (``q``: part of the name or e-mail; of one company), a page at a time."""
        return await self._name_page(Contact, contact_search(q, company_id), CONTACT_CURSOR, limit, cursor)

    async def company_names(self, company_ids: set[UUID]) -> dict[UUID, str]:
        if not company_ids:
            return {}
        rows = await self.session.execute(select(Company.id, Company.name).where(Company.id.in_(company_ids)))
        return dict(rows.tuples().all())

    async def contact_names(self, contact_ids: set[UUID]) -> dict[UUID, str]:
        if not contact_ids:
            return {}
        rows = await self.session.execute(select(Contact.id, Contact.name).where(Contact.id.in_(contact_ids)))
        return dict(rows.tuples().all())

    # -- companies -------------------------------------------------------------------------------

    async def company(self, company_id: UUID, *, for_update: bool = False) -> Company:
        statement = select(Company).where(Company.id == company_id)
        company = (
            await self.session.execute(
                statement.with_for_update().execution_options(populate_existing=True) if for_update else statement
            )
        ).scalar_one_or_none()
        if company is None:
            raise Problem(404, "not-found", "No such company.")
        return company

    async def create_company(self, data: CompanyIn) -> Company:
        errors = FieldErrors()
        phone = normalise_phone(data.phone, self._region(), errors)
        if data.owner_id is not None:
            await self.leads.require_member(data.owner_id, "/owner_id", errors)
        errors.raise_if_any("invalid-company", "company")
        company = Company(
            name=data.name.strip(),
            domain=data.domain.strip().lower(),
            phone=phone,
            address=data.address,
            owner_id=data.owner_id,
            tags=clean_tags(data.tags),
        )
        self.session.add(company)
        await self.session.flush()
        return company

    async def update_company(self, company_id: UUID, patch: CompanyPatch) -> Company:
        company = await self.company(company_id, for_update=True)
        errors = FieldErrors()
        given = {f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET}
        if "phone" in given:
            given["phone"] = normalise_phone(given["phone"], self._region(), errors)
        if given.get("owner_id") is not None:
            await self.leads.require_member(given["owner_id"], "/owner_id", errors)
        if "tags" in given:
            given["tags"] = clean_tags(given["tags"])
        errors.raise_if_any("invalid-company", "company")
        for name, value in given.items():
            setattr(company, name, value)
        await self.session.flush()
        return company

    async def delete_company(self, company_id: UUID) -> None:
        """Delete a company; its contacts and deals stay, without a company."""
        company = await self.company(company_id, for_update=True)
        await self.session.execute(update(Contact).where(Contact.company_id == company.id).values(company_id=None))
        await self.session.execute(update(Deal).where(Deal.company_id == company.id).values(company_id=None))
        await self.session.delete(company)

    # -- contacts --------------------------------------------------------------------------------

    async def contact(self, contact_id: UUID, *, for_update: bool = False) -> Contact:
        statement = select(Contact).where(Contact.id == contact_id)
        contact = (
            await self.session.execute(
                statement.with_for_update().execution_options(populate_existing=True) if for_update else statement
            )
        ).scalar_one_or_none()
        if contact is None:
            raise Problem(404, "not-found", "No such contact.")
        return contact

    async def create_contact(self, data: ContactIn, *, lead_id: UUID | None = None) -> Contact:
        errors = FieldErrors()
        email = normalise_email(data.email, errors)
        phone = normalise_phone(data.phone, self._region(), errors)
        await self._check_company(data.company_id, errors)
        if data.owner_id is not None:
            await self.leads.require_member(data.owner_id, "/owner_id", errors)
        errors.raise_if_any("invalid-contact", "contact")
        contact = Contact(
            name=data.name.strip(),
            email=email,
            phone=phone,
            title=data.title.strip(),
            company_id=data.company_id,
            owner_id=data.owner_id,
            lead_id=lead_id,
            tags=clean_tags(data.tags),
        )
        self.session.add(contact)
        await self.session.flush()
        return contact

    async def update_contact(self, contact_id: UUID, patch: ContactPatch) -> Contact:
        contact = await self.contact(contact_id, for_update=True)
        errors = FieldErrors()
        given = {f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET}
        if "email" in given:
            given["email"] = normalise_email(given["email"], errors)
        if "phone" in given:
            given["phone"] = normalise_phone(given["phone"], self._region(), errors)
        if "company_id" in given:
            await self._check_company(given["company_id"], errors)
        if given.get("owner_id") is not None:
            await self.leads.require_member(given["owner_id"], "/owner_id", errors)
        if "tags" in given:
            given["tags"] = clean_tags(given["tags"])
        errors.raise_if_any("invalid-contact", "contact")
        for name, value in given.items():
            setattr(contact, name, value)
        await self.session.flush()
        return contact

    async def delete_contact(self, contact_id: UUID) -> None:
        contact = await self.contact(contact_id, for_update=True)
        await self.session.execute(update(Deal).where(Deal.contact_id == contact.id).values(contact_id=None))
        await self.session.delete(contact)

    # -- conversion ------------------------------------------------------------------------------

    async def convert(self, lead_id: UUID, data: ConvertIn) -> ConversionOut:
        """Lead → contact (+ company found or created) (+ deal); the lead is marked converted.

        One transaction: if any part is invalid (e.g. a stage of another pipeline), nothing is created.
        """
        lead = await self.leads.get(lead_id, for_update=True)
        if lead.status == "converted":
            raise Problem(409, "already-converted", "This lead has been converted already.")
        company = None
        company_name = (data.company_name if data.company_name is not None else lead.company).strip()
        if company_name:
            company = (
                await self.session.execute(
                    select(Company)
                    .where(func.lower(Company.name) == company_name.lower())
                    .order_by(Company.created_at)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if company is None:
                company = Company(name=company_name, owner_id=lead.owner_id)
                self.session.add(company)
                await self.session.flush()
        contact = Contact(
            name=lead.name,
            email=lead.email,
            phone=lead.phone,
            title=lead.title,
            company_id=company.id if company else None,
            owner_id=lead.owner_id,
            lead_id=lead.id,
            tags=list(lead.tags),
        )
        self.session.add(contact)
        await self.session.flush()
        deal = None
        if data.create_deal:
            value = data.deal_value if data.deal_value is not None else lead.estimated_value
            currency = data.deal_currency if data.deal_value is not None else lead.currency
            deal = await PipelineService(self.kernel, self.session, self.tenant, self.viewer).create_deal(
                DealIn(
                    title=data.deal_title or (f"{company_name or lead.name}"),
                    pipeline_id=data.pipeline_id,
                    stage_id=data.stage_id,
                    value=value,
                    currency=currency,
                    owner_id=lead.owner_id,
                    contact_id=contact.id,
                    company_id=company.id if company else None,
                    lead_id=lead.id,
                )
            )
        old_status = lead.status
        lead.status = "converted"
        self.leads.record_activity(
            lead.id,
            "converted",
            data={
                "from_status": old_status,
                "contact_id": str(contact.id),
                "company_id": str(company.id) if company else None,
                "deal_id": str(deal.id) if deal else None,
            },
        )
        await self.session.flush()
        await self.kernel.events.publish(
            self.session,
            "crm.lead.converted",
            LeadConverted(
                lead_id=lead.id,
                contact_id=contact.id,
                company_id=company.id if company else None,
                deal_id=deal.id if deal else None,
                owner_id=lead.owner_id,
            ),
        )
        return ConversionOut(
            lead=lead_out(lead),
            contact=contact_out(contact),
            company=company_out(company) if company else None,
            deal=deal_out(deal) if deal else None,
        )
