"""The lead list: filters, full-text search through the term table, sort orders and keyset cursors.

A page is read with the kernel's one-round-trip reader (``db_reader``): the search (when words or
tags are asked for) and the page are one statement each, Core selects of the columns the API
returns, so a list request costs at most two round trips and no ORM work. Both name the tenant
explicitly besides row-level security: the policy's setting is unknown to the planner, the literal
lets it use the statistics of this tenant (one tenant may hold half the table, or nothing of it).
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
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    func,
    intersect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType

from inopsio.db.reader import TenantReader
from inopsio.errors import Problem
from inopsio_crm.access import Viewer
from inopsio_crm.leads.models import Lead, LeadTerm
from inopsio_crm.leads.schemas import LeadOut, LeadPage

leads = Lead.__table__.c
terms = LeadTerm.__table__.c

#: What a list row holds: the fields of :class:`LeadOut`, in its order.
LIST_COLUMNS = (
    leads.id,
    leads.name,
    leads.email,
    leads.phone,
    leads.company,
    leads.title,
    leads.source,
    leads.status,
    leads.owner_id,
    leads.estimated_value,
    leads.currency,
    leads.tags,
    leads.custom,
    leads.created_at,
    leads.updated_at,
    leads.deleted_at,
    leads.merged_into_id,
)
SORTS = ("created_at", "updated_at", "name", "estimated_value")
#: Searches matching at most this many leads pass their ids to the list query (see :func:`search_statement`).
SEARCH_FIRST = 5_000
#: Above every character: ``term < word + TOP`` bounds the terms starting with ``word`` (byte order).
TOP = "\U0010ffff"
#: Starts a tag's term (``\x01vip``): no typed word can start with it (see the terms trigger).
TAG_MARK = "\x01"
TERM_LENGTH = 100
LIST_SETTINGS = {"max_parallel_workers_per_gather": "0"}
_SEARCH_WORD = re.compile(r"[\w@.+-]+", re.UNICODE)


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


@dataclass(frozen=True)
class Search:
    """The leads having every typed word and tag: their ids when there are few, else ``ids`` is ``None``."""

    words: list[str]
    tags: list[str]
    #: A PostgreSQL array literal (``{...}``) of the matching ids, passed back as it came.
    ids: str | None
    count: int


def cents(value: Decimal) -> int:
    return int((value * 100).to_integral_value())


def lead_out(lead: Any) -> LeadOut:
    """A lead (ORM object or list row) as the API shows it."""
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


# -- search ----------------------------------------------------------------------------------------


def search_words(q: str) -> list[str]:
    """The words typed, lower-cased as the search document is (at most eight; single characters,
    which would match most leads, are left out)."""
    words = [w.lower().strip(".-+") for w in _SEARCH_WORD.findall(q)]
    return [w[:100] for w in words if len(w) > 1][:8]


def _word_matches(tenant_id: UUID, word: str) -> Select[Any]:
    return select(terms.lead_id).where(terms.tenant_id == tenant_id, terms.term >= word, terms.term < word + TOP)


def _tag_matches(tenant_id: UUID, tag: str) -> Select[Any]:
    # Cut as the trigger cuts terms: a longer tag finds its own leads (and those of tags starting
    # alike, which the list's own tag condition then leaves out).
    return select(terms.lead_id).where(terms.tenant_id == tenant_id, terms.term == (TAG_MARK + tag)[:TERM_LENGTH])


def search_statement(tenant_id: UUID, words: Sequence[str], tags: Sequence[str] = ()) -> Select[int, str]:
    """How many leads have every word and tag (counted up to ``SEARCH_FIRST + 1``), and their ids.

    The term index gives a word's or a tag's leads cheaply (index-only). The ids come back as the
    text of an array and go into the list query as it came: no id is parsed into Python and back.
    """
    queries = [_word_matches(tenant_id, word) for word in words] + [_tag_matches(tenant_id, tag) for tag in tags]
    # INTERSECT removes duplicates too (a word can start several terms of one lead).
    matches = queries[0].distinct() if len(queries) == 1 else intersect(*queries)
    found = matches.limit(SEARCH_FIRST + 1).subquery("matches")
    return select(func.count(), cast(func.array_agg(found.c.lead_id), Text))


def search_of(words: list[str], tags: list[str], row: Any) -> Search:
    count, ids = row
    # Past SEARCH_FIRST the words are common: walking the sort order's index and checking each lead
    # against its terms (the (tenant, lead, term) index) finds a page sooner than fetching them all.
    return Search(words=words, tags=tags, ids=(ids or "{}") if count <= SEARCH_FIRST else None, count=count)


def matching(tenant_id: UUID, words: Sequence[str], tags: Sequence[str] = ()) -> list[ColumnElement[bool]]:
    """Every word is the start of some word of the lead (``ann smi`` finds Anna Smith); it has every tag."""
    return [leads.id.in_(_word_matches(tenant_id, word)) for word in words] + [
        leads.id.in_(_tag_matches(tenant_id, tag)) for tag in tags
    ]


def tags_in_terms(tags: Sequence[str]) -> bool:
    """Whether the terms tell exactly which leads have these tags (a term keeps 100 characters)."""
    return all(len(TAG_MARK + tag) <= TERM_LENGTH for tag in tags)


# -- filters ---------------------------------------------------------------------------------------


def visible_to(viewer: Viewer) -> list[ColumnElement[bool]]:
    """Members see their own leads and unassigned ones; ``crm.leads.read_all`` sees all."""
    if viewer.read_all:
        return []
    return [or_(leads.owner_id.is_(None), leads.owner_id == viewer.user_id)]


def lead_conditions(
    tenant_id: UUID, viewer: Viewer, filters: LeadFilters, search: Search | None = None, *, tags_by_terms: bool = False
) -> list[ColumnElement[bool]]:
    """The conditions on ``crm_leads`` for the viewer's leads matching ``filters``.

    With ``tags_by_terms`` the tags are checked through the term table (``search`` has them, and
    :func:`tags_in_terms` holds), not in the lead's own row.
    """
    conditions: list[ColumnElement[bool]] = [leads.tenant_id == tenant_id, *visible_to(viewer)]
    if filters.deleted:
        conditions += [leads.deleted_at.is_not(None), leads.merged_into_id.is_(None)]
    else:
        conditions.append(leads.deleted_at.is_(None))
    if search is not None:
        if search.ids is not None:
            # One array parameter (= ANY), not thousands of IN parameters. Untyped, so PostgreSQL reads
            # the literal as uuid[] while parsing: a constant the planner sees (through text it would be
            # a run-time conversion, re-done for every row it filters, and an array of unknown size).
            ids = bindparam("search_ids", search.ids, type_=NullType())
            conditions.append(leads.id == any_(cast(ids, ARRAY(Uuid()))))
        else:
            conditions += matching(tenant_id, search.words, search.tags if tags_by_terms else ())
    if filters.status:
        conditions.append(leads.status.in_(list(filters.status)))
    if filters.owner == "none":
        conditions.append(leads.owner_id.is_(None))
    elif filters.owner == "me":
        conditions.append(leads.owner_id == viewer.user_id)
    elif filters.owner:
        conditions.append(leads.owner_id == UUID(filters.owner))
    if filters.source:
        conditions.append(leads.source == filters.source)
    if not tags_by_terms:
        conditions += [leads.tags.contains([tag]) for tag in filters.tags]
    if filters.created_from:
        conditions.append(leads.created_at >= filters.created_from)
    if filters.created_to:
        conditions.append(leads.created_at < filters.created_to)
    # On the integer key, so a value range is an index range (and never matches leads without one).
    if filters.value_min is not None:
        conditions.append(leads.value_key >= max(cents(filters.value_min), 0))
    if filters.value_max is not None:
        conditions.append(leads.value_key.between(0, cents(filters.value_max)))
    if filters.custom_equals:
        conditions.append(leads.custom.contains(filters.custom_equals))
    for key, (low, high) in (filters.custom_ranges or {}).items():
        number = isinstance(low, int | float) or isinstance(high, int | float)
        # Dates are stored as ISO strings, which sort like the dates they name.
        value = leads.custom[key].astext.cast(Numeric) if number else leads.custom[key].astext
        if low is not None:
            conditions.append(value >= low)
        if high is not None:
            conditions.append(value <= high)
    return conditions


# -- sorting and cursors ---------------------------------------------------------------------------


def sort_column(field: str) -> Any:
    # The value sorts by its integer key (cents; -1 for none): see the indexes on Lead.
    return leads.value_key if field == "estimated_value" else leads[field]


def check_sort(sort: str) -> str:
    field = sort.lstrip("-")
    if field not in SORTS:
        raise Problem(
            400,
            "invalid-sort",
            f"Sort by one of {', '.join(SORTS)} (prefix - for descending).",
            errors=[{"pointer": "/sort", "source": "query", "detail": "unknown sort"}],
        )
    return field


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


def _cursor_value(row: Any, field: str) -> Any:
    if field == "estimated_value":
        return cents(row.estimated_value) if row.estimated_value is not None else -1
    value = getattr(row, field)
    return value.isoformat() if isinstance(value, dt.datetime) else value


def page_statement(
    tenant_id: UUID,
    viewer: Viewer,
    filters: LeadFilters,
    search: Search | None,
    *,
    sort: str,
    after: tuple[Any, UUID] | None,
    limit: int,
) -> Select[Any]:
    """One page (and one row more, to tell whether there is a next page) of the viewer's leads."""
    field = check_sort(sort)
    descending = sort.startswith("-")
    # Every condition but custom fields (and the bin, which no live index holds) can be answered from
    # a sort order's index and the term table, without reading the leads' rows.
    by_index = (
        not (filters.custom_equals or filters.custom_ranges or filters.deleted)
        and tags_in_terms(filters.tags)
        and (search is not None or not filters.tags)
    )
    conditions = lead_conditions(tenant_id, viewer, filters, search, tags_by_terms=by_index)
    key = sort_column(field)
    if after is not None:
        # A row comparison: PostgreSQL turns it into one range of the (key, id) index.
        value, last_id = after
        row = tuple_(key, leads.id)
        conditions.append(row < tuple_(value, last_id) if descending else row > tuple_(value, last_id))
    if by_index:
        # The page's ids first, from the sort order's index alone (an index-only scan: its key columns
        # hold every filter, and a typed word is checked in the term index or against the few matches'
        # ids); then those rows. Leads that fail a filter are never read, however many precede the
        # page, so a search whose matches all sort last ("tar" sorted by name) stays cheap.
        ordered = (key.desc(), leads.id.desc()) if descending else (key.asc(), leads.id.asc())
        page = select(leads.id, key.label("key")).where(*conditions).order_by(*ordered).limit(limit + 1).subquery()
        statement = select(*LIST_COLUMNS).join_from(
            Lead.__table__, page, and_(leads.tenant_id == tenant_id, leads.id == page.c.id)
        )
        sort_key, sort_id = page.c.key, page.c.id
    elif search is not None and search.ids is not None:
        # At most SEARCH_FIRST leads match: fetch exactly those by key, then sort them. Fenced (a
        # materialised CTE), or the planner may walk the sort order's index reading every lead's row
        # until it meets them, which costs the whole table when they sort last.
        found = select(*LIST_COLUMNS, leads.value_key).where(*conditions).cte("found").prefix_with("MATERIALIZED")
        statement = select(*(found.c[column.name] for column in LIST_COLUMNS))
        sort_key, sort_id = found.c.value_key if field == "estimated_value" else found.c[field], found.c.id
    else:
        statement = select(*LIST_COLUMNS).where(*conditions)
        sort_key, sort_id = key, leads.id
    order = (sort_key.desc(), sort_id.desc()) if descending else (sort_key.asc(), sort_id.asc())
    return statement.order_by(*order).limit(limit + 1)


# -- the list --------------------------------------------------------------------------------------


class LeadList:
    """The viewer's leads, a page at a time, through one-round-trip reads."""

    def __init__(self, reader: TenantReader, tenant_id: UUID, viewer: Viewer) -> None:
        # A page is 50 rows: starting parallel workers would cost more than they save.
        self.reader = reader.with_settings(LIST_SETTINGS)
        self.tenant_id = tenant_id
        self.viewer = viewer

    async def search(self, filters: LeadFilters) -> Search | None:
        """The leads having the typed words and the tags (``None`` when neither is asked for)."""
        words = search_words(filters.q or "")
        tags = list(dict.fromkeys(filters.tags))
        if not words and not tags:
            return None
        return search_of(words, tags, await self.reader.first(search_statement(self.tenant_id, words, tags)))

    async def page(
        self, filters: LeadFilters, *, sort: str = "-created_at", limit: int = 50, cursor: str | None = None
    ) -> LeadPage:
        field = check_sort(sort)
        after = decode_cursor(cursor, sort) if cursor else None
        search = await self.search(filters)
        if search is not None and search.count == 0:
            return LeadPage(items=[], next_cursor=None)
        statement = page_statement(self.tenant_id, self.viewer, filters, search, sort=sort, after=after, limit=limit)
        rows = await self.reader.all(statement)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor(sort, _cursor_value(last, field), last.id)
        return LeadPage(items=[lead_out(row) for row in rows], next_cursor=next_cursor)
