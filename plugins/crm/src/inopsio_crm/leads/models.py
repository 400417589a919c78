"""What the database stores about leads (the API speaks :mod:`inopsio_crm.leads.schemas`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db import Base, TenantOwned, TenantScoped, Timestamped, tenant_foreign_key, tenant_table_args
from inopsio.db.base import utcnow

LEAD_STATUSES = ("new", "contacted", "qualified", "unqualified", "converted")
ACTIVITY_KINDS = ("created", "note", "status_changed", "assigned", "updated", "merged", "restored", "converted")
CUSTOM_FIELD_TYPES = ("text", "number", "date", "choice", "boolean")

#: What full-text search looks at; 'simple' keeps names and addresses as they are (no stemming).
SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || "
    "coalesce(phone, '') || ' ' || coalesce(company, '') || ' ' || coalesce(title, '') || ' ' || "
    "coalesce(source, ''))"
)

VALUE_KEY = "coalesce((estimated_value * 100)::bigint, -1)"
#: What the lead list filters on besides its sort key (see inopsio_crm.leads.listing).
LIST_FILTERS = ("status", "source", "owner_id", "value_key", "created_at")


def _live_sort_index(name: str, key: str) -> Index:
    # Key columns after the id order nothing (the id is unique); they let an index-only scan test
    # every filter of the list without reading the lead.
    filters = (column for column in LIST_FILTERS if column != key)
    return Index(name, "tenant_id", key, "id", *filters, postgresql_where=text("deleted_at IS NULL"))


class Lead(TenantOwned, Timestamped, Base):
    __tablename__ = "crm_leads"
    __table_args__ = tenant_table_args(
        CheckConstraint(f"status IN {LEAD_STATUSES!r}", name="status"),
        CheckConstraint("(estimated_value IS NULL) = (currency IS NULL)", name="value_currency"),
        Index("ix_crm_leads_tenant_owner", "tenant_id", "owner_id"),
        Index("ix_crm_leads_tenant_email", "tenant_id", text("lower(email)")),
        Index("ix_crm_leads_tenant_phone", "tenant_id", "phone"),
        # The list's sort orders over live leads, with the id as tie-breaker for keyset pages. Only
        # leakproof comparisons (text, timestamptz, bigint) can use an index under row-level security,
        # so the value is sorted by an integer key, and search and tags go through crm_lead_terms: GIN
        # indexes on the tsvector or the JSONB columns would never be used by the application role.
        _live_sort_index("ix_crm_leads_live_created", "created_at"),
        _live_sort_index("ix_crm_leads_live_updated", "updated_at"),
        _live_sort_index("ix_crm_leads_live_name", "name"),
        _live_sort_index("ix_crm_leads_live_value", "value_key"),
        # The bin (and the purge of what stayed in it too long).
        Index("ix_crm_leads_bin", "tenant_id", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
    )

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    #: E.164 (``+41446681800``).
    phone: Mapped[str | None] = mapped_column(String(32))
    company: Mapped[str] = mapped_column(String(200), default="", server_default="")
    title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    source: Mapped[str] = mapped_column(String(50), default="", server_default="")
    status: Mapped[str] = mapped_column(String(20), default="new", server_default="new")
    owner_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    estimated_value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: Values of the tenant's custom fields by key, validated against their definitions.
    custom: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    #: Set while the lead is in the bin (restorable until purged) or once merged into another.
    deleted_at: Mapped[dt.datetime | None]
    merged_into_id: Mapped[UUID | None]
    #: The CSV import that created the lead (its timeline's "created" entry; no foreign key, as the
    #: import's record may be purged while its leads stay).
    import_id: Mapped[UUID | None]
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_DOCUMENT, persisted=True), deferred=True)
    #: The value in cents, -1 without one: what the list sorts and filters by (see the indexes).
    value_key: Mapped[int] = mapped_column(BigInteger, Computed(VALUE_KEY, persisted=True), deferred=True)

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"status": "new", "estimated_value": None, "currency": None}


class LeadTerm(TenantScoped, Base):
    """One word of a lead's search document (its tsvector's lexemes) or one of its tags (``\x01`` + tag),
    kept by a trigger on crm_leads.

    Searching is a range scan ``term >= 'ann' AND term < 'ann' || U+10FFFF`` per word typed, a tag an
    equality, on a byte-ordered (``C``) column: text comparisons are leakproof, so the index serves
    the application role under row-level security, where ``tsvector @@ tsquery`` and ``jsonb @>`` (not
    leakproof) could not use one.
    """

    __tablename__ = "crm_lead_terms"
    # The key (tenant, term, lead) finds a word's leads; this index answers "does this lead have a
    # term starting with ...", which the list needs for common words while it walks a sort index
    # (without it PostgreSQL scans every lead of the tenant). It costs imports about a tenth of
    # their speed. Triggers on crm_leads add and remove a lead's terms (found again from its old
    # search document), so no foreign key is needed.
    __table_args__ = tenant_table_args(Index("ix_crm_lead_terms_lead", "tenant_id", "lead_id", "term"))

    term: Mapped[str] = mapped_column(String(100, collation="C"), primary_key=True)
    lead_id: Mapped[UUID] = mapped_column(primary_key=True)


class LeadActivity(TenantOwned, Base):
    """One entry of a lead's timeline: a note, a status change, an assignment, a merge."""

    __tablename__ = "crm_lead_activities"
    __table_args__ = tenant_table_args(
        tenant_foreign_key(["lead_id"], "crm_leads", ondelete="CASCADE"),
        CheckConstraint(f"kind IN {ACTIVITY_KINDS!r}", name="kind"),
        Index("ix_crm_lead_activities_lead", "tenant_id", "lead_id", "created_at"),
    )

    lead_id: Mapped[UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"kind": "note"}


class CustomField(TenantOwned, Timestamped, Base):
    """A tenant's typed extra field on leads; values live in ``crm_leads.custom`` under ``key``."""

    __tablename__ = "crm_custom_fields"
    __table_args__ = tenant_table_args(
        CheckConstraint(f"type IN {CUSTOM_FIELD_TYPES!r}", name="type"),
        Index("uq_crm_custom_fields_key", "tenant_id", "key", unique=True),
    )

    key: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(10))
    choices: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    required: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"type": "text"}


class AssignmentRule(TenantScoped, Base):
    """The tenant's round-robin rule: new leads without an owner go to ``member_ids`` in turn."""

    __tablename__ = "crm_assignment_rules"

    enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    member_ids: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: Index into ``member_ids`` of the next member to get a lead.
    next_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)


IMPORT_STATUSES = ("uploaded", "queued", "running", "done", "failed")
DUPLICATE_POLICIES = ("skip", "update", "create")


class LeadImport(TenantOwned, Timestamped, Base):
    """One CSV upload and what became of it: the file itself, the mapping, counts and rejected rows."""

    __tablename__ = "crm_lead_imports"
    __table_args__ = tenant_table_args(
        CheckConstraint(f"status IN {IMPORT_STATUSES!r}", name="status"),
        CheckConstraint(f"duplicate_policy IN {DUPLICATE_POLICIES!r}", name="duplicate_policy"),
    )

    filename: Mapped[str] = mapped_column(String(255), default="", server_default="")
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    encoding: Mapped[str] = mapped_column(String(20))
    delimiter: Mapped[str] = mapped_column(String(1))
    header: Mapped[list[str]] = mapped_column(JSONB, default=list)
    #: Column index (as text) → target (``name``, ``email``, ..., ``custom.<key>``).
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    duplicate_policy: Mapped[str] = mapped_column(String(10), default="skip", server_default="skip")
    all_or_nothing: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    status: Mapped[str] = mapped_column(String(10), default="uploaded", server_default="uploaded")
    total_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: ``[{"line": n, "values": [...], "errors": [...]}]`` for the rejected-rows report.
    rejects: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"), deferred=True)
    job_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[dt.datetime | None]

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"status": "uploaded", "duplicate_policy": "skip", "content": b"name\n", "delimiter": ","}
