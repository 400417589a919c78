"""The CRM's background jobs: CSV imports, and emptying the leads bin once the undo window has passed."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from uuid import UUID

from sqlalchemy import delete, select, update
from sqlalchemy.orm import undefer

from inopsio.db.base import utcnow
from inopsio.jobs import PermanentJobError
from inopsio_crm.leads.imports import run_import
from inopsio_crm.leads.models import Lead, LeadImport
from inopsio_crm.leads.services import UNDO_DAYS

log = logging.getLogger("inopsio_crm.jobs")


async def purge_deleted_leads(ctx: dict[str, Any], *, undo_days: float = UNDO_DAYS) -> int:
    """Scheduled per tenant: delete the tenant's leads that have been in the bin longer than ``undo_days``.

    Merged leads stay: the survivor's timeline refers to them. Running it twice changes nothing more.
    """
    cutoff = utcnow() - dt.timedelta(days=undo_days)
    async with ctx["db_session"]() as session:
        result = await session.execute(
            delete(Lead).where(Lead.deleted_at < cutoff, Lead.merged_into_id.is_(None)),
            execution_options={"synchronize_session": False},
        )
    return int(result.rowcount or 0)


async def import_leads(ctx: dict[str, Any], *, import_id: str) -> dict[str, int]:
    """Run a CSV import (``POST /api/v1/crm/imports/{id}/start``) in one transaction, reporting progress.

    Idempotent: an import already done (or failed) is not run again when the job is retried.
    """
    progress = ctx["progress"]
    await progress(1, "reading the file")
    try:
        async with ctx["db_session"]() as session:
            record = (
                await session.execute(
                    select(LeadImport)
                    .where(LeadImport.id == UUID(import_id))
                    .options(undefer(LeadImport.content), undefer(LeadImport.rejects))
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if record is None or record.status in ("done", "failed"):
                return _counts(record)
            record.status = "running"
            await run_import(session, ctx["tenant"], record, progress)
            record.status = "done"
            record.finished_at = utcnow()
            counts = _counts(record)
    except Exception as exc:
        log.exception("import %s failed", import_id)
        async with ctx["db_session"]() as session:
            await session.execute(
                update(LeadImport)
                .where(LeadImport.id == UUID(import_id))
                .values(status="failed", error=str(exc)[:1000], finished_at=utcnow())
            )
        raise PermanentJobError(f"import {import_id} failed: {exc}") from exc
    await progress(
        100,
        f"{counts['created']} created, {counts['updated']} updated, {counts['skipped']} skipped, "
        f"{counts['rejected']} rejected",
    )
    return counts


def _counts(record: LeadImport | None) -> dict[str, int]:
    if record is None:
        return {"created": 0, "updated": 0, "skipped": 0, "rejected": 0}
    return {
        "created": record.created,
        "updated": record.updated,
        "skipped": record.skipped,
        "rejected": record.rejected,
    }
