"""What the database stores about companies and contacts."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db import Base, TenantOwned, Timestamped, tenant_foreign_key, tenant_table_args


class Company(TenantOwned, Timestamped, Base):
    __tablename__ = "crm_companies"
    __table_args__ = tenant_table_args(Index("ix_crm_companies_name", "tenant_id", text("lower(name)")))

    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(253), default="", server_default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    owner_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))


class Contact(TenantOwned, Timestamped, Base):
    __tablename__ = "crm_contacts"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["company_id"], "crm_companies"),
        tenant_foreign_key(["lead_id"], "crm_leads"),
        Index("ix_crm_contacts_name", "tenant_id", text("lower(name)")),
        Index("ix_crm_contacts_company", "tenant_id", "company_id"),
        Index("ix_crm_contacts_email", "tenant_id", text("lower(email)")),
    )

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    company_id: Mapped[UUID | None] = mapped_column()
    owner_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: The lead this contact was converted from.
    lead_id: Mapped[UUID | None] = mapped_column()
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
