"""CSV import of leads: reading any reasonable CSV, guessing the column mapping, checking rows, importing.

Reading: UTF-8 (with or without a BOM), else Latin-1; the delimiter (``,`` ``;`` tab ``|``) is sniffed
from the first lines; quoted fields may hold delimiters and newlines; broken quoting is refused at
upload with the line it was found on. Checking a row uses the same rules as the API (e-mail, E.164
phone, ISO 4217 currency, custom field types, owner must be a member). Importing runs as a job in one
transaction: exact duplicates (e-mail or phone, against the tenant's leads and earlier rows of the
file) are skipped, updated or created again as the import asks, and rows that fail are reported, not
imported (with ``all_or_nothing``, one failing row imports nothing).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.identity.models import Membership, User
from inopsio_crm.leads.models import LEAD_STATUSES, CustomField, Lead, LeadActivity, LeadImport
from inopsio_crm.leads.validation import (
    FieldErrors,
    check_custom_value,
    check_money,
    clean_tags,
    default_phone_region,
    normalise_email,
    normalise_phone,
)

BATCH = 2000
SNIFF_BYTES = 64 * 1024
#: What a column may be mapped to (besides ``custom.<key>``).
TARGETS = (
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "source",
    "status",
    "owner_email",
    "estimated_value",
    "currency",
    "tags",
    "notes",
)
#: How the import wizard names each target.
TARGET_LABELS = {
    "name": "Name",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "E-mail",
    "phone": "Phone",
    "company": "Company",
    "title": "Job title",
    "source": "Source",
    "status": "Status",
    "owner_email": "Owner (a member's e-mail)",
    "estimated_value": "Estimated value",
    "currency": "Currency",
    "tags": "Tags",
    "notes": "Note",
}
SYNONYMS = {
    "name": ("name", "full name", "fullname", "contact", "contact name", "lead", "lead name", "nom", "nombre"),
    "first_name": ("first name", "firstname", "given name", "forename", "vorname", "prenom"),
    "last_name": ("last name", "lastname", "surname", "family name", "nachname", "nom de famille"),
    "email": ("email", "e mail", "mail", "email address", "e mail address", "courriel"),
    "phone": ("phone", "telephone", "tel", "mobile", "phone number", "cell", "telefon"),
    "company": ("company", "organisation", "organization", "account", "company name", "firma", "societe"),
    "title": ("title", "job title", "position", "role", "job"),
    "source": ("source", "lead source", "channel", "origin"),
    "status": ("status", "lead status", "stage"),
    "owner_email": ("owner", "owner email", "assigned to", "sales rep", "rep"),
    "estimated_value": ("value", "estimated value", "amount", "deal value", "revenue", "budget", "betrag", "wert"),
    "currency": ("currency", "ccy"),
    "tags": ("tags", "labels", "tag"),
    "notes": ("notes", "note", "comment", "comments", "description"),
}
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_TAG_SPLIT = re.compile(r"[,|;]")
_TRUE = {"true", "yes", "y", "1", "ja", "oui", "x"}
_FALSE = {"false", "no", "n", "0", "nein", "non", ""}


@dataclass
class ParsedFile:
    encoding: str
    delimiter: str
    header: list[str]
    rows: int


def decode(content: bytes) -> tuple[str, str]:
    """The text and its encoding: UTF-8 (a BOM is dropped), else Latin-1 (which decodes any bytes)."""
    try:
        return content.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return content.decode("latin-1"), "latin-1"


def sniff_delimiter(text: str) -> str:
    sample = text[:SNIFF_BYTES]
    # The sniffer needs whole lines; a sample cut inside a quoted field confuses it.
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        first = sample.split("\n", 1)[0]
        return max(",;\t|", key=first.count) if any(d in first for d in ",;\t|") else ","


def reader(text: str, delimiter: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)


def parse_file(content: bytes) -> ParsedFile:
    """Check the whole file reads as CSV; 422 naming the line where it does not."""
    text, encoding = decode(content)
    if not text.strip():
        raise _bad_file("The file is empty.")
    delimiter = sniff_delimiter(text)
    rows = reader(text, delimiter)
    count = 0
    try:
        header = [h.strip() for h in next(rows)]
        for _ in rows:
            count += 1
    except csv.Error as exc:
        line = getattr(rows, "line_num", "?")
        raise _bad_file(f"The file is not valid CSV near line {line}: {exc}.") from None
    if not any(header):
        raise _bad_file("The first line must name the columns.")
    return ParsedFile(encoding=encoding, delimiter=delimiter, header=header, rows=count)


def sample_rows(head: bytes, encoding: str, delimiter: str, *, whole: bool, count: int = 3) -> list[list[str]]:
    """The first ``count`` data rows of a file from its first bytes, ``head`` (shown beside the
    mapping). Unless ``head`` is the ``whole`` file, its cut-off last line is left out; so is
    anything unreadable."""
    text = head.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="ignore")
    if not whole and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            rows.append(row)
            if len(rows) > count:
                break
    except csv.Error:
        pass
    return rows[1 : count + 1]


def _bad_file(detail: str) -> Problem:
    return Problem(422, "invalid-csv", detail, errors=[{"pointer": "/file", "detail": detail}])


def _normal(label: str) -> str:
    ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub(" ", ascii_label.lower()).strip()


def guess_mapping(header: list[str], custom_fields: dict[str, CustomField]) -> dict[str, str]:
    """Column index → target, from the header's words; each target is used once, unknown columns ignored."""
    lookup: dict[str, str] = {}
    for target, words in SYNONYMS.items():
        for word in words:
            lookup.setdefault(word, target)
    for key, definition in custom_fields.items():
        lookup.setdefault(_normal(key), f"custom.{key}")
        lookup.setdefault(_normal(definition.label), f"custom.{key}")
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for index, label in enumerate(header):
        target = lookup.get(_normal(label))
        if target and target not in used:
            mapping[str(index)] = target
            used.add(target)
    return mapping


def check_mapping(mapping: dict[str, str], header: list[str], custom_fields: dict[str, CustomField]) -> None:
    errors = FieldErrors()
    seen: set[str] = set()
    for column, target in mapping.items():
        if not column.isdigit() or int(column) >= len(header):
            errors.add(f"/mapping/{column}", "no such column")
        if target not in TARGETS and not (target.startswith("custom.") and target[7:] in custom_fields):
            errors.add(f"/mapping/{column}", f"unknown target {target!r}")
        if target in seen:
            errors.add(f"/mapping/{column}", f"{target} is mapped twice")
        seen.add(target)
    if "name" not in seen and not {"first_name", "last_name"} & seen:
        errors.add("/mapping", "map a column to name (or first_name / last_name)")
    errors.raise_if_any("invalid-mapping", "mapping")


@dataclass
class RowContext:
    """What checking a row needs, loaded once per import."""

    region: str | None
    default_currency: str
    custom_fields: dict[str, CustomField]
    members_by_email: dict[str, UUID]


@dataclass
class CheckedRow:
    values: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    errors: list[str] = field(default_factory=list)


def _custom_from_text(definition: CustomField, raw: str) -> Any:
    if definition.type == "number":
        try:
            number = float(raw.replace(" ", "").replace(",", "."))
        except ValueError:
            return raw
        return int(number) if number.is_integer() else number
    if definition.type == "boolean":
        lowered = raw.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else raw
    if definition.type == "choice":
        return next((c for c in definition.choices if c.lower() == raw.strip().lower()), raw)
    return raw.strip()


def _money(raw: str) -> Decimal | None:
    cleaned = raw.strip().replace(" ", "").replace("\u00a0", "").replace("'", "")
    if not cleaned:
        return None
    if "," in cleaned and "." in cleaned:  # 1.234,50 or 1,234.50: the last mark is the decimal one
        cleaned = (
            cleaned.replace(".", "").replace(",", ".")
            if cleaned.rindex(",") > cleaned.rindex(".")
            else cleaned.replace(",", "")
        )
    elif "," in cleaned:
        cleaned = cleaned.replace(",", ".")
    return Decimal(cleaned)


def check_row(row: list[str], mapping: dict[str, str], ctx: RowContext) -> CheckedRow:
    """A row's lead fields, or its errors (as ``field: problem`` sentences)."""
    raw = {target: (row[int(col)] if int(col) < len(row) else "").strip() for col, target in mapping.items()}
    errors = FieldErrors()
    out = CheckedRow()
    name = raw.get("name") or " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p)
    if not name:
        errors.add("/name", "is empty")
    elif len(name) > 200:
        errors.add("/name", "is longer than 200 characters")
    values: dict[str, Any] = {"name": name}
    values["email"] = normalise_email(raw.get("email"), errors)
    values["phone"] = normalise_phone(raw.get("phone"), ctx.region, errors)
    for text_field, limit in (("company", 200), ("title", 200), ("source", 50)):
        value = raw.get(text_field, "")
        if len(value) > limit:
            errors.add(f"/{text_field}", f"is longer than {limit} characters")
        values[text_field] = value[:limit]
    status = raw.get("status", "").lower() or "new"
    if status not in LEAD_STATUSES:
        errors.add("/status", f"must be one of {', '.join(LEAD_STATUSES)}")
    values["status"] = status
    value = None
    if raw.get("estimated_value"):
        try:
            value = _money(raw["estimated_value"])
        except InvalidOperation:
            errors.add("/estimated_value", "is not a number")
    currency = raw.get("currency") or (ctx.default_currency if value is not None else None)
    values["estimated_value"] = value
    values["currency"] = check_money(value, currency, errors)
    values["tags"] = clean_tags(_TAG_SPLIT.split(raw.get("tags", ""))) if raw.get("tags") else []
    owner_email = raw.get("owner_email", "").lower()
    values["owner_id"] = None
    if owner_email:
        owner = ctx.members_by_email.get(owner_email)
        if owner is None:
            errors.add("/owner_email", "is not a member of this tenant")
        values["owner_id"] = owner
    custom: dict[str, Any] = {}
    for target, text_value in raw.items():
        if target.startswith("custom.") and text_value:
            definition = ctx.custom_fields[target[7:]]
            custom[definition.key] = check_custom_value(definition, _custom_from_text(definition, text_value), errors)
    for key, definition in ctx.custom_fields.items():
        if definition.required and custom.get(key) in (None, ""):
            errors.add(f"/custom/{key}", "is required")
    values["custom"] = custom
    out.values = values
    out.notes = raw.get("notes", "")
    out.errors = [f"{e['pointer'].lstrip('/')}: {e['detail']}" for e in errors.errors]
    return out


async def row_context(session: AsyncSession, tenant: Any) -> RowContext:
    fields = {f.key: f for f in (await session.execute(select(CustomField))).scalars()}
    members = await session.execute(
        select(func.lower(User.email), Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant.id)
    )
    return RowContext(
        region=default_phone_region(tenant.settings.locale),
        default_currency=tenant.settings.currency,
        custom_fields=fields,
        members_by_email=dict(members.all()),
    )


class _ImportRun:
    """The row-checking half of an import: turns rows into lead and activity rows, chunk by chunk.

    Keeps what it needs across chunks (known e-mails and phones, counts, rejected rows); touched by
    one thread at a time.
    """

    def __init__(self, record: LeadImport, tenant_id: UUID, ctx: RowContext, rows: Iterator[list[str]]) -> None:
        self.record = record
        self.tenant_id = tenant_id
        self.ctx = ctx
        self.rows = enumerate(rows, start=2)
        self.mapping = dict(record.mapping.items())
        self.existing_email: dict[str, UUID] = {}
        self.existing_phone: dict[str, UUID] = {}
        self.new_by_id: dict[UUID, dict[str, Any]] = {}
        self.updates: dict[UUID, dict[str, Any]] = {}
        self.rejects: list[dict[str, Any]] = []
        self.skipped = 0
        self.created = 0
        self.line = 1
        self.now = utcnow()

    def activity(self, lead_id: UUID, kind: str, body: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": new_id(),
            "tenant_id": self.tenant_id,
            "lead_id": lead_id,
            "kind": kind,
            "actor_id": self.record.created_by,
            "body": body,
            "data": data or {},
            "created_at": self.now,
        }

    def check_chunk(self, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The next ``size`` rows' new leads and their timeline rows (empty lists at the end)."""
        leads: list[dict[str, Any]] = []
        activities: list[dict[str, Any]] = []
        policy = self.record.duplicate_policy
        for line, row in self.rows:
            self.line = line
            if not any(cell.strip() for cell in row):
                continue
            checked = check_row(row, self.mapping, self.ctx)
            if checked.errors:
                self.rejects.append({"line": self.line, "values": row, "errors": checked.errors})
                continue
            values = checked.values
            email, phone = values["email"], values["phone"]
            duplicate = (self.existing_email.get(email.lower()) if email else None) or (
                self.existing_phone.get(phone) if phone else None
            )
            if duplicate is not None and policy == "skip":
                self.skipped += 1
                continue
            if duplicate is not None and policy == "update":
                changes = {k: v for k, v in values.items() if v not in (None, "", [], {})}
                pending = self.new_by_id.get(duplicate)
                if pending is not None:  # an earlier row of this file: fold into it
                    pending.update({k: v for k, v in changes.items() if k != "custom"})
                    pending["custom"] = {**pending["custom"], **changes.get("custom", {})}
                else:
                    self.updates.setdefault(duplicate, {}).update(changes)
                continue
            lead_id = new_id()
            lead_row = {
                "id": lead_id,
                "tenant_id": self.tenant_id,
                "created_at": self.now,
                "updated_at": self.now,
                "import_id": self.record.id,
            }
            lead_row.update(values)
            leads.append(lead_row)
            if policy == "update":
                self.new_by_id[lead_id] = lead_row
            # No "created" activity: the lead's import_id is its timeline's first entry (one row less
            # per imported lead, a sixth of the import's time).
            if checked.notes:
                activities.append(self.activity(lead_id, "note", body=checked.notes))
            if email:
                self.existing_email.setdefault(email.lower(), lead_id)
            if phone:
                self.existing_phone.setdefault(phone, lead_id)
            if len(leads) >= size:
                break
        self.created += len(leads)
        return leads, activities


async def run_import(session: AsyncSession, tenant: Any, record: LeadImport, progress: Any) -> None:
    """Import ``record``'s rows in ``session``'s transaction, counting and reporting as it goes.

    Checking rows (Python) and writing them (PostgreSQL) overlap: while a batch is being written, a
    thread checks the next one. An import that may still change rows it has read (``update``) or
    may import nothing (``all_or_nothing``) checks everything before writing anything.
    """
    text, _ = decode(record.content)
    rows = reader(text, record.delimiter)
    next(rows)  # the header
    run = _ImportRun(record, tenant.id, await row_context(session, tenant), rows)
    live = await session.execute(select(Lead.id, Lead.email, Lead.phone).where(Lead.deleted_at.is_(None)))
    for lead_id, email, phone in live:
        if email:
            run.existing_email.setdefault(email.lower(), lead_id)
        if phone:
            run.existing_phone.setdefault(phone, lead_id)
    total = max(record.total_rows, 1)

    async def write(batch: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        await insert_columns(session, LEAD_COLUMNS, "crm_leads", batch[0])
        await insert_columns(session, ACTIVITY_COLUMNS, "crm_lead_activities", batch[1])

    if record.duplicate_policy != "update" and not record.all_or_nothing:
        batch = await asyncio.to_thread(run.check_chunk, BATCH)
        while batch[0]:
            following, _ = await asyncio.gather(asyncio.to_thread(run.check_chunk, BATCH), write(batch))
            batch = following
            await progress(99 * run.line / (total + 1), f"imported {run.created} of about {record.total_rows} rows")
    else:
        batches = []
        while (batch := await asyncio.to_thread(run.check_chunk, BATCH))[0]:
            batches.append(batch)
            await progress(60 * run.line / (total + 1), f"checked {run.line - 1} of {record.total_rows} rows")
        if not (run.rejects and record.all_or_nothing):
            for index, batch in enumerate(batches):
                await write(batch)
                await progress(60 + 39 * (index + 1) / len(batches), f"imported {BATCH * (index + 1)} rows")
        else:
            run.created = 0
    if not (run.rejects and record.all_or_nothing):
        for lead_id, changes in run.updates.items():
            custom = changes.pop("custom", None)
            statement = update(Lead).where(Lead.id == lead_id).values(**changes, updated_at=run.now)
            if custom:
                statement = statement.values(custom=Lead.custom.op("||")(custom))
            await session.execute(statement)
            await session.execute(
                insert(LeadActivity).values(
                    run.activity(
                        lead_id,
                        "updated",
                        data={"how": "import", "import_id": str(record.id), "fields": sorted(changes)},
                    )
                )
            )
    record.rejected = len(run.rejects)
    record.rejects = run.rejects
    record.skipped = run.skipped
    record.created = run.created
    record.updated = len(run.updates) if not (run.rejects and record.all_or_nothing) else 0


#: Column → PostgreSQL array type, for inserting a batch as one ``INSERT ... SELECT FROM unnest(...)``.
LEAD_COLUMNS = {
    "tenant_id": "uuid",
    "id": "uuid",
    "name": "text",
    "email": "text",
    "phone": "text",
    "company": "text",
    "title": "text",
    "source": "text",
    "status": "text",
    "owner_id": "uuid",
    "estimated_value": "numeric",
    "currency": "text",
    "tags": "jsonb",
    "custom": "jsonb",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "import_id": "uuid",
}
ACTIVITY_COLUMNS = {
    "tenant_id": "uuid",
    "id": "uuid",
    "lead_id": "uuid",
    "kind": "text",
    "actor_id": "uuid",
    "body": "text",
    "data": "jsonb",
    "created_at": "timestamptz",
}


async def insert_columns(
    session: AsyncSession, columns: dict[str, str], table: str, rows: list[dict[str, Any]]
) -> None:
    """Insert ``rows`` with one statement that takes each column as an array.

    About four times faster than an ORM bulk insert of the same rows (no per-row parameter
    processing), and, unlike COPY, allowed under row-level security: every row is still checked
    against the tenant policy. The arrays travel in PostgreSQL's binary format, straight on the
    session's psycopg connection (same transaction): as text, psycopg quotes every element of every
    array with regular expressions, which cost more than the rest of the import's Python work.
    """
    if not rows:
        return
    arrays = {}
    for column, sql_type in columns.items():
        values = [row.get(column) for row in rows]
        if sql_type == "jsonb":
            values = [json.dumps(v) for v in values]
        arrays[column] = values
    selects = ", ".join(f"CAST(%({c})b AS {'text' if t == 'jsonb' else t}[])" for c, t in columns.items())
    casts = ", ".join(f"{c}::jsonb" if t == "jsonb" else c for c, t in columns.items())
    names = ", ".join(columns)
    await session.flush()  # anything the session still holds goes first, as session.execute would send it
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection
    assert driver is not None
    statement = f"INSERT INTO {table} ({names}) SELECT {casts} FROM unnest({selects}) AS u({names})"
    async with driver.cursor() as cursor:
        await cursor.execute(statement, arrays)


def rejects_csv(record: LeadImport) -> str:
    """The rejected rows as they were in the file, with a last column saying what is wrong."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=record.delimiter)
    writer.writerow(["line", *record.header, "errors"])
    for reject in record.rejects:
        writer.writerow([reject["line"], *[neutralise(v) for v in reject["values"]], "; ".join(reject["errors"])])
    return out.getvalue()


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A cell a spreadsheet would run as a formula (``=HYPERLINK(...)``) is prefixed with ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
