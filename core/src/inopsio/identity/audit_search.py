"""Reading a tenant's audit log: filters and keyset pagination, newest first.

The cursor is the last entry's ``(occurred_at, id)``, opaque to clients: paging stays stable while
new entries arrive and costs one index range scan however deep the page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec
from sqlalchemy import select, tuple_

from inopsio.errors import Problem
from inopsio.identity.models import AuditEntry

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class AuditFilter(msgspec.Struct, kw_only=True, frozen=True):
    #: An exact action (``auth.signin.failed``) or a prefix ending in ``.*`` (``auth.*``).
    action: str | None = None
    actor_id: UUID | None = None
    outcome: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def encode_cursor(entry: AuditEntry) -> str:
    raw = f"{entry.occurred_at.isoformat()}|{entry.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, entry_id = raw.partition("|")
        occurred_at = dt.datetime.fromisoformat(when)
        if occurred_at.tzinfo is None:
            raise ValueError("naive time")
        return occurred_at, UUID(entry_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(
            400,
            "invalid-cursor",
            "This cursor is not one the API gave out; pass next_cursor from the previous page as it is.",
        ) from None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search_audit(
    session: AsyncSession, where: AuditFilter, *, before: str | None = None, limit: int = 50
) -> tuple[list[AuditEntry], str | None]:
    """One page of the session's tenant's entries, newest first, and the cursor of the next page."""
    query = select(AuditEntry)
    if where.action:
        if where.action.endswith(".*"):
            query = query.where(AuditEntry.action.like(_like_prefix(where.action[:-1]), escape="\\"))
        else:
            query = query.where(AuditEntry.action == where.action)
    if where.actor_id is not None:
        query = query.where(AuditEntry.actor_id == where.actor_id)
    if where.outcome:
        query = query.where(AuditEntry.outcome == where.outcome)
    if where.since is not None:
        query = query.where(AuditEntry.occurred_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEntry.occurred_at < where.until)
    if before:
        occurred_at, entry_id = decode_cursor(before)
        query = query.where(tuple_(AuditEntry.occurred_at, AuditEntry.id) < tuple_(occurred_at, entry_id))
    # One row more than asked tells whether there is a next page.
    query = query.order_by(AuditEntry.occurred_at.desc(), AuditEntry.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
