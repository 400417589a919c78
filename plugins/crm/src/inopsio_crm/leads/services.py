"""Lead operations: every write goes through :class:`LeadService`, in the caller's transaction.

The service knows who acts (:class:`Viewer`): members see their own and unassigned leads, holders of
``crm.leads.read_all`` see all; a lead a viewer may not see answers exactly like a lead that does not
exist.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    Uuid,
    any_,
    bindparam,
    intersect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity.models import Membership
from inopsio.tenancy.schemas import TenantInfo
from inopsio_crm.events import LeadAssigned, LeadCreated, LeadMerged, LeadUpdated
from inopsio_crm.leads.duplicates import Duplicate, find_duplicates
from inopsio_crm.leads.models import AssignmentRule, CustomField, Lead, LeadActivity, LeadTerm
from inopsio_crm.leads.schemas import (
    ActivityOut,
    DuplicateMatch,
    LeadIn,
    LeadOut,
    LeadPage,
    LeadPatch,
)
from inopsio_crm.leads.validation import (
    FieldErrors,
    check_custom,
    check_money,
    clean_tags,
    default_phone_region,
    normalise_email,
    normalise_phone,
)

#: Deleted leads stay restorable this long, then the purge job removes them.
UNDO_DAYS = 30
_SEARCH_WORD = re.compile(r"[\w@.+-]+", re.UNICODE)


@dataclass(frozen=True)
class Viewer:
    """Who acts, and what of the leads they may see and do."""

    user_id: UUID | None
    read_all: bool
    can_assign: bool
    label: str = ""


@dataclass
class LeadFilters:
    q: str | None = None
    status: Sequence[str] = ()
    #: A user id, ``"me"`` or ``"none"`` (unassigned).
    owner: str | None = None
    source: str | None = None
    tags: Sequence[str] = ()
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    value_min: Decimal | None = None
    value_max: Decimal | None = None
    #: ``{key: value}`` equality, ``{key: (min, max)}`` ranges for number and date fields.
    custom_equals: dict[str, Any] | None = None
    custom_ranges: dict[str, tuple[Any, Any]] | None = None
    deleted: bool = False


SORTS = ("created_at", "updated_at", "name", "estimated_value")


def sort_key(entity: Any, field: str) -> Any:
    # The value sorts by its integer key (cents; -1 for none): see the indexes on Lead.
    return entity.value_key if field == "estimated_value" else getattr(entity, field)


def cents(value: Decimal) -> int:
    return int((value * 100).to_integral_value())


def lead_out(lead: Lead) -> LeadOut:
    return LeadOut(
        id=lead.id,
        name=lead.name,
        email=lead.email,
        phone=lead.phone,
        company=lead.company,
        title=lead.title,
        source=lead.source,
        status=lead.status,
        owner_id=lead.owner_id,
        estimated_value=lead.estimated_value,
        currency=lead.currency,
        tags=list(lead.tags),
        custom=dict(lead.custom),
        created_at=lead.created_at,
        updated_at=lead.updated_at,
        deleted_at=lead.deleted_at,
        merged_into_id=lead.merged_into_id,
    )


def activity_out(activity: LeadActivity) -> ActivityOut:
    return ActivityOut(
        id=activity.id,
        lead_id=activity.lead_id,
        kind=activity.kind,
        actor_id=activity.actor_id,
        body=activity.body,
        data=dict(activity.data),
        created_at=activity.created_at,
    )


#: Searches matching at most this many leads pass their ids to the list query (see LeadService.search_ids).
SEARCH_FIRST = 5_000
#: For the list's transaction: plans depend on the values (how rare a word is, how wide a range),
#: so no generic plan of a prepared statement; and no parallel workers for a 50-row page.
QUERY_SETTINGS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)
#: Above every character: ``term < word + TOP`` bounds the terms starting with ``word`` (byte order).
TOP = "\U0010ffff"


def search_words(q: str) -> list[str]:
    """The words typed, lower-cased as the search document is (at most eight; single characters,
    which would match most leads, are left out)."""
    words = [w.lower().strip(".-+") for w in _SEARCH_WORD.findall(q)]
    return [w[:100] for w in words if len(w) > 1][:8]


def matching(words: Sequence[str]) -> list[ColumnElement[bool]]:
    """Every word is the start of some word of the lead (``ann smi`` finds Anna Smith)."""
    return [
        Lead.id.in_(select(LeadTerm.lead_id).where(LeadTerm.term >= word, LeadTerm.term < word + TOP)) for word in words
    ]


def encode_cursor(sort: str, value: Any, lead_id: UUID) -> str:
    raw = msgspec.json.encode([sort, str(value) if value is not None else None, str(lead_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, lead_id = msgspec.json.decode(raw, type=tuple[str, str | None, UUID])
    except (binascii.Error, msgspec.DecodeError, ValueError):
        raise _bad_cursor() from None
    if cursor_sort != sort or value is None:
        raise _bad_cursor()
    field = sort.lstrip("-")
    try:
        if field in ("created_at", "updated_at"):
            return dt.datetime.fromisoformat(value), lead_id
        if field == "estimated_value":
            return int(value), lead_id
    except ValueError:
        raise _bad_cursor() from None
    return value, lead_id


def _bad_cursor() -> Problem:
    return Problem(
        400,
        "invalid-cursor",
        "The cursor is not one this list gave out (or belongs to another sort order).",
        errors=[{"pointer": "/cursor", "source": "query", "detail": "unknown cursor"}],
    )


class LeadService:
    def __init__(self, kernel: Any, session: AsyncSession, tenant: TenantInfo, viewer: Viewer) -> None:
        self.kernel = kernel
        self.session = session
        self.tenant = tenant
        self.viewer = viewer

    # -- reading ---------------------------------------------------------------------------------

    def visible(self) -> ColumnElement[bool]:
        if self.viewer.read_all:
            return Lead.id.is_not(None)
        return or_(Lead.owner_id.is_(None), Lead.owner_id == self.viewer.user_id)

    async def get(self, lead_id: UUID, *, deleted: bool = False, for_update: bool = False) -> Lead:
        """A live lead (or, with ``deleted``, one in the bin) the viewer may see; else 404."""
        statement = select(Lead).where(Lead.id == lead_id, self.visible())
        statement = statement.where(Lead.deleted_at.is_not(None) if deleted else Lead.deleted_at.is_(None))
        if deleted:
            statement = statement.where(Lead.merged_into_id.is_(None))
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        lead = (await self.session.execute(statement)).scalar_one_or_none()
        if lead is None:
            raise Problem(404, "not-found", "No such lead.")
        return lead

    async def custom_fields(self) -> dict[str, CustomField]:
        rows = (await self.session.execute(select(CustomField).order_by(CustomField.position))).scalars()
        return {field.key: field for field in rows}

    async def timeline(self, lead_id: UUID) -> list[ActivityOut]:
        await self.get(lead_id)
        rows = await self.session.execute(
            select(LeadActivity)
            .where(LeadActivity.lead_id == lead_id)
            .order_by(LeadActivity.created_at.desc(), LeadActivity.id.desc())
        )
        return [activity_out(a) for a in rows.scalars()]

    async def list(
        self, filters: LeadFilters, *, sort: str = "-created_at", limit: int = 50, cursor: str | None = None
    ) -> LeadPage:
        await self.session.execute(QUERY_SETTINGS)
        statement = self.filtered(filters, await self.search_ids(filters))
        field = sort.lstrip("-")
        entity: Any = Lead
        if field not in SORTS:
            raise Problem(
                400,
                "invalid-sort",
                f"Sort by one of {', '.join(SORTS)} (prefix - for descending).",
                errors=[{"pointer": "/sort", "source": "query", "detail": "unknown sort"}],
            )
        key = sort_key(entity, field)
        descending = sort.startswith("-")
        if cursor:
            value, last_id = decode_cursor(cursor, sort)
            # A row comparison: PostgreSQL turns it into one range of the (key, id) index.
            after = (
                tuple_(key, entity.id) < tuple_(value, last_id)
                if descending
                else tuple_(key, entity.id) > tuple_(value, last_id)
            )
            statement = statement.where(after)
        order = (key.desc(), entity.id.desc()) if descending else (key.asc(), entity.id.asc())
        rows = list((await self.session.execute(statement.order_by(*order).limit(limit + 1))).scalars())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            last_value = {
                "created_at": last.created_at.isoformat(),
                "updated_at": last.updated_at.isoformat(),
                "name": last.name,
                "estimated_value": cents(last.estimated_value) if last.estimated_value is not None else -1,
            }[field]
            next_cursor = encode_cursor(sort, last_value, last.id)
        return LeadPage(items=[lead_out(lead) for lead in rows], next_cursor=next_cursor)

    async def search_ids(self, filters: LeadFilters) -> list[UUID] | None:
        """The ids of the leads matching the search words, when there are few enough to look up.

        The term index gives the matches of a word cheaply (index-only); up to ``SEARCH_FIRST`` of them
        go to the list query as one array parameter and the list fetches exactly those leads by key.
        Past that, the words are common: walking the sort order's index and checking each lead against
        its terms (the (tenant, lead, term) index) finds a page sooner.
        """
        words = search_words(filters.q or "")
        if not words:
            return None
        queries = [select(LeadTerm.lead_id).where(LeadTerm.term >= w, LeadTerm.term < w + TOP) for w in words]
        # INTERSECT removes duplicates too (a word can start several terms of one lead).
        matches = queries[0].distinct() if len(queries) == 1 else intersect(*queries)
        ids = list((await self.session.execute(matches.limit(SEARCH_FIRST + 1))).scalars())
        return ids if len(ids) <= SEARCH_FIRST else None

    def filtered(self, filters: LeadFilters, search_ids: list[UUID] | None = None) -> Select[tuple[Lead]]:
        """The viewer's leads matching ``filters`` (unordered); ``search_ids`` from :meth:`search_ids`."""
        conditions: list[ColumnElement[bool]] = [self.visible()]
        if filters.deleted:
            conditions += [Lead.deleted_at.is_not(None), Lead.merged_into_id.is_(None)]
        else:
            conditions.append(Lead.deleted_at.is_(None))
        if search_ids is not None:
            # One array parameter (= ANY), not thousands of IN parameters.
            conditions.append(Lead.id == any_(bindparam("search_ids", search_ids, type_=ARRAY(Uuid()))))
        elif filters.q:
            conditions += matching(search_words(filters.q))
        if filters.status:
            conditions.append(Lead.status.in_(list(filters.status)))
        if filters.owner == "none":
            conditions.append(Lead.owner_id.is_(None))
        elif filters.owner == "me":
            conditions.append(Lead.owner_id == self.viewer.user_id)
        elif filters.owner:
            conditions.append(Lead.owner_id == UUID(filters.owner))
        if filters.source:
            conditions.append(Lead.source == filters.source)
        for tag in filters.tags:
            conditions.append(Lead.tags.contains([tag]))
        if filters.created_from:
            conditions.append(Lead.created_at >= filters.created_from)
        if filters.created_to:
            conditions.append(Lead.created_at < filters.created_to)
        # On the integer key, so a value range is an index range (and never matches leads without one).
        if filters.value_min is not None:
            conditions.append(Lead.value_key >= max(cents(filters.value_min), 0))
        if filters.value_max is not None:
            conditions.append(Lead.value_key.between(0, cents(filters.value_max)))
        if filters.custom_equals:
            conditions.append(Lead.custom.contains(filters.custom_equals))
        for key, (low, high) in (filters.custom_ranges or {}).items():
            number = isinstance(low, int | float) or isinstance(high, int | float)
            # Dates are stored as ISO strings, which sort like the dates they name.
            value = Lead.custom[key].astext.cast(Numeric) if number else Lead.custom[key].astext
            if low is not None:
                conditions.append(value >= low)
            if high is not None:
                conditions.append(value <= high)
        return select(Lead).where(*conditions)

    # -- writing ---------------------------------------------------------------------------------

    async def require_member(self, user_id: UUID, pointer: str, errors: FieldErrors) -> None:
        found = (
            await self.session.execute(
                select(Membership.user_id).where(Membership.tenant_id == self.tenant.id, Membership.user_id == user_id)
            )
        ).first()
        if found is None:
            errors.add(pointer, "is not a member of this tenant")

    def _check_owner_change(self, owner_id: UUID | None) -> None:
        if owner_id is not None and owner_id == self.viewer.user_id:
            return
        if not self.viewer.can_assign:
            raise Problem(
                403,
                "forbidden",
                "Only members allowed to assign leads may give one to someone else.",
                permission="crm.leads.assign",
            )

    async def duplicates_of(self, lead: Lead | LeadIn, exclude: Sequence[UUID] = ()) -> list[Duplicate]:
        return await find_duplicates(
            self.session, name=lead.name, company=lead.company, email=lead.email, phone=lead.phone, exclude=exclude
        )

    def duplicate_problem(self, matches: list[Duplicate]) -> Problem:
        """409 listing the matches the viewer may see, and how many others there are."""
        visible = [m for m in matches if self.viewer.read_all or m.lead.owner_id in (None, self.viewer.user_id)]
        shown = [
            msgspec.to_builtins(DuplicateMatch(lead=lead_out(m.lead), reasons=m.reasons, score=round(m.score, 1)))
            for m in visible
        ]
        return Problem(
            409,
            "possible-duplicate",
            "This lead looks like one that exists already. Merge it, change it, or send it again with "
            "?allow_duplicate=true.",
            matches=shown,
            hidden_matches=len(matches) - len(visible),
        )

    async def create(self, data: LeadIn, *, allow_duplicate: bool = False, how: str = "manual") -> Lead:
        errors = FieldErrors()
        email = normalise_email(data.email, errors)
        phone = normalise_phone(data.phone, default_phone_region(self.tenant.settings.locale), errors)
        currency = check_money(data.estimated_value, data.currency, errors)
        custom = check_custom(await self.custom_fields(), data.custom, errors)
        if data.owner_id is not None:
            self._check_owner_change(data.owner_id)
            await self.require_member(data.owner_id, "/owner_id", errors)
        errors.raise_if_any()
        lead = Lead(
            name=data.name.strip(),
            email=email,
            phone=phone,
            company=data.company.strip(),
            title=data.title.strip(),
            source=data.source.strip(),
            status=data.status,
            owner_id=data.owner_id,
            estimated_value=data.estimated_value,
            currency=currency,
            tags=clean_tags(data.tags),
            custom=custom,
        )
        if not allow_duplicate:
            matches = await self.duplicates_of(lead)
            if matches:
                raise self.duplicate_problem(matches)
        round_robin = lead.owner_id is None and await self.next_round_robin_owner()
        if round_robin:
            lead.owner_id = round_robin
        self.session.add(lead)
        await self.session.flush()
        self.record_activity(lead.id, "created", data={"source": lead.source, "how": how})
        if data.notes.strip():
            self.record_activity(lead.id, "note", body=data.notes.strip())
        await self.kernel.events.publish(
            self.session,
            "crm.lead.created",
            LeadCreated(
                lead_id=lead.id,
                name=lead.name,
                email=lead.email,
                company=lead.company,
                source=lead.source,
                status=lead.status,
                owner_id=lead.owner_id,
            ),
        )
        if lead.owner_id is not None:
            self.record_activity(
                lead.id, "assigned", data={"owner_id": str(lead.owner_id), "how": "round_robin" if round_robin else how}
            )
            await self.kernel.events.publish(
                self.session,
                "crm.lead.assigned",
                LeadAssigned(
                    lead_id=lead.id,
                    owner_id=lead.owner_id,
                    previous_owner_id=None,
                    how="round_robin" if round_robin else how,
                ),
            )
        return lead

    async def update(self, lead_id: UUID, patch: LeadPatch, *, allow_duplicate: bool = False) -> Lead:
        lead = await self.get(lead_id, for_update=True)
        errors = FieldErrors()
        given = {f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET}
        changes: dict[str, Any] = {}
        if "name" in given:
            changes["name"] = given["name"].strip()
        if "email" in given:
            changes["email"] = normalise_email(given["email"], errors)
        if "phone" in given:
            changes["phone"] = normalise_phone(
                given["phone"], default_phone_region(self.tenant.settings.locale), errors
            )
        for name in ("company", "title", "source"):
            if name in given:
                changes[name] = given[name].strip()
        if "status" in given:
            changes["status"] = given["status"]
        if "estimated_value" in given or "currency" in given:
            value = given.get("estimated_value", lead.estimated_value)
            currency = check_money(value, given.get("currency", lead.currency), errors)
            changes["estimated_value"], changes["currency"] = value, currency
        if "tags" in given:
            changes["tags"] = clean_tags(given["tags"])
        if "custom" in given:
            changes["custom"] = check_custom(await self.custom_fields(), given["custom"], errors, current=lead.custom)
        new_owner = lead.owner_id
        if "owner_id" in given and given["owner_id"] != lead.owner_id:
            new_owner = given["owner_id"]
            self._check_owner_change(new_owner)
            if new_owner is not None:
                await self.require_member(new_owner, "/owner_id", errors)
        errors.raise_if_any()
        changed = sorted(k for k, v in changes.items() if getattr(lead, k) != v)
        if not allow_duplicate and {"name", "company", "email", "phone"} & set(changed):
            probe = Lead(**{**{k: getattr(lead, k) for k in ("name", "company", "email", "phone")}, **changes})
            matches = await self.duplicates_of(probe, exclude=[lead.id])
            if matches:
                raise self.duplicate_problem(matches)
        old_status = lead.status
        for name in changed:
            setattr(lead, name, changes[name])
        if "status" in changed:
            self.record_activity(lead.id, "status_changed", data={"from": old_status, "to": lead.status})
        other = [c for c in changed if c != "status"]
        if other:
            self.record_activity(lead.id, "updated", data={"fields": other})
        if changed:
            lead.updated_at = utcnow()
            await self.kernel.events.publish(
                self.session, "crm.lead.updated", LeadUpdated(lead_id=lead.id, changed=changed, status=lead.status)
            )
        if new_owner != lead.owner_id:
            await self._set_owner(lead, new_owner, "manual")
        await self.session.flush()
        return lead

    async def add_note(self, lead_id: UUID, body: str) -> LeadActivity:
        lead = await self.get(lead_id)
        activity = self.record_activity(lead.id, "note", body=body.strip())
        await self.session.flush()
        return activity

    def record_activity(
        self, lead_id: UUID, kind: str, *, body: str = "", data: dict[str, Any] | None = None
    ) -> LeadActivity:
        activity = LeadActivity(lead_id=lead_id, kind=kind, actor_id=self.viewer.user_id, body=body, data=data or {})
        self.session.add(activity)
        return activity

    # -- bin -------------------------------------------------------------------------------------

    async def delete(self, lead_id: UUID) -> Lead:
        lead = await self.get(lead_id, for_update=True)
        lead.deleted_at = utcnow()
        await self.session.flush()
        return lead

    async def restore(self, lead_id: UUID) -> Lead:
        lead = await self.get(lead_id, deleted=True, for_update=True)
        lead.deleted_at = None
        self.record_activity(lead.id, "restored")
        await self.session.flush()
        return lead

    # -- merging ---------------------------------------------------------------------------------

    async def merge(self, survivor_id: UUID, duplicate_id: UUID) -> Lead:
        """Fold ``duplicate_id`` into ``survivor_id``: empty fields filled, tags and custom values joined,
        the timeline moved; the duplicate is kept (deleted, ``merged_into_id`` set) so links to it resolve."""
        if survivor_id == duplicate_id:
            raise Problem(
                422,
                "invalid-merge",
                "A lead cannot be merged into itself.",
                errors=[{"pointer": "/duplicate_id", "detail": "same as the surviving lead"}],
            )
        survivor = await self.get(survivor_id, for_update=True)
        try:
            duplicate = await self.get(duplicate_id, for_update=True)
        except Problem:
            raise Problem(
                422,
                "invalid-merge",
                "There is no such lead to merge.",
                errors=[{"pointer": "/duplicate_id", "detail": "no such lead"}],
            ) from None
        filled = []
        for name in ("email", "phone", "company", "title", "source", "owner_id"):
            if not getattr(survivor, name) and getattr(duplicate, name):
                setattr(survivor, name, getattr(duplicate, name))
                filled.append(name)
        if survivor.estimated_value is None and duplicate.estimated_value is not None:
            survivor.estimated_value, survivor.currency = duplicate.estimated_value, duplicate.currency
            filled.append("estimated_value")
        survivor.tags = clean_tags([*survivor.tags, *duplicate.tags])
        survivor.custom = {**duplicate.custom, **survivor.custom}
        survivor.updated_at = utcnow()
        await self.session.execute(
            update(LeadActivity).where(LeadActivity.lead_id == duplicate.id).values(lead_id=survivor.id)
        )
        duplicate.deleted_at = utcnow()
        duplicate.merged_into_id = survivor.id
        self.record_activity(
            survivor.id,
            "merged",
            body=f"Merged {duplicate.name}" + (f" ({duplicate.email})" if duplicate.email else ""),
            data={"merged_id": str(duplicate.id), "filled": filled, "merged_lead": _snapshot(duplicate)},
        )
        await self.session.flush()
        await self.kernel.events.publish(
            self.session, "crm.lead.merged", LeadMerged(survivor_id=survivor.id, merged_id=duplicate.id)
        )
        return survivor

    # -- assignment ------------------------------------------------------------------------------

    async def assign(self, lead_id: UUID, owner_id: UUID | None, how: str = "manual") -> Lead:
        lead = await self.get(lead_id, for_update=True)
        errors = FieldErrors()
        if owner_id is not None:
            await self.require_member(owner_id, "/owner_id", errors)
        errors.raise_if_any()
        if lead.owner_id != owner_id:
            await self._set_owner(lead, owner_id, how)
        return lead

    async def bulk_assign(self, lead_ids: Sequence[UUID], owner_id: UUID | None) -> int:
        """Assign every listed lead, or none: an unknown id fails the whole request."""
        errors = FieldErrors()
        if owner_id is not None:
            await self.require_member(owner_id, "/owner_id", errors)
        errors.raise_if_any()
        unique = list(dict.fromkeys(lead_ids))
        leads = list(
            (
                await self.session.execute(
                    select(Lead)
                    .where(Lead.id.in_(unique), Lead.deleted_at.is_(None), self.visible())
                    .order_by(Lead.id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )
        missing = set(unique) - {lead.id for lead in leads}
        if missing:
            raise Problem(
                422,
                "invalid-leads",
                "Some leads do not exist; nothing was assigned.",
                errors=[
                    {"pointer": f"/lead_ids/{i}", "detail": "no such lead"}
                    for i, lead_id in enumerate(lead_ids)
                    if lead_id in missing
                ],
            )
        changed = 0
        for lead in leads:
            if lead.owner_id != owner_id:
                await self._set_owner(lead, owner_id, "bulk")
                changed += 1
        return changed

    async def _set_owner(self, lead: Lead, owner_id: UUID | None, how: str) -> None:
        previous = lead.owner_id
        lead.owner_id = owner_id
        lead.updated_at = utcnow()
        self.record_activity(
            lead.id,
            "assigned",
            data={
                "owner_id": str(owner_id) if owner_id else None,
                "previous_owner_id": str(previous) if previous else None,
                "how": how,
            },
        )
        await self.session.flush()
        await self.kernel.events.publish(
            self.session,
            "crm.lead.assigned",
            LeadAssigned(lead_id=lead.id, owner_id=owner_id, previous_owner_id=previous, how=how),
        )

    async def next_round_robin_owner(self) -> UUID | None:
        """The member whose turn it is (and advance the turn), when the tenant's rule is on."""
        rule = (
            await self.session.execute(
                select(AssignmentRule).with_for_update().execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if rule is None or not rule.enabled or not rule.member_ids:
            return None
        # Skip members who have left since the rule was written.
        members = {
            str(m)
            for m in (
                await self.session.execute(select(Membership.user_id).where(Membership.tenant_id == self.tenant.id))
            ).scalars()
        }
        for step in range(len(rule.member_ids)):
            index = (rule.next_index + step) % len(rule.member_ids)
            candidate = rule.member_ids[index]
            if candidate in members:
                rule.next_index = (index + 1) % len(rule.member_ids)
                return UUID(candidate)
        return None


def _snapshot(lead: Lead) -> dict[str, Any]:
    """What the merged lead held, kept in the survivor's timeline."""
    return msgspec.to_builtins(lead_out(lead))
