"""The sample plugin's jobs: one reports where it ran (tenant, database scope, try) to a Redis list; one
reports its progress, as a long job does for the status API; one is scheduled per tenant."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert

from inopsio_sample.models import Note, NoteTag

log = logging.getLogger("inopsio_sample.jobs")


async def report_scope(ctx: dict[str, Any], *, key: str, fail_tries: int = 0, sleep: float = 0.0) -> int:
    """Push ``{tenant_id, scope, notes, try}`` to the Redis list ``key``; fail the first ``fail_tries``
    tries and sleep ``sleep`` seconds first, so tests can see retries and timeouts."""
    await asyncio.sleep(sleep)
    job_try: int = ctx["job_try"]
    async with ctx["db_session"]() as session:
        scope = (await session.execute(text("SELECT current_setting('inopsio.tenant_id', true)"))).scalar()
        notes = (await session.execute(select(func.count()).select_from(Note))).scalar_one()
    report = {"tenant_id": str(ctx["tenant_id"]), "scope": scope, "notes": notes, "try": job_try}
    await ctx["kernel"].redis.rpush(key, msgspec.json.encode(report))
    if job_try <= fail_tries:
        raise RuntimeError(f"failing try {job_try} on purpose")
    return job_try


async def count_notes(ctx: dict[str, Any], *, steps: int = 4, hold: str | None = None) -> int:
    """Count the tenant's notes in ``steps`` reported steps, logging each; with ``hold`` (a Redis list),
    stop halfway until something is pushed to it (4 s at most), so a test can read the progress of a
    job still running."""
    for step in range(steps):
        await ctx["progress"](100 * step / steps, f"step {step + 1} of {steps}")
        log.info("counting notes, step %d of %d", step + 1, steps)
        if hold and step == steps // 2:
            await ctx["kernel"].redis.blpop([hold], timeout=4)
    async with ctx["db_session"]() as session:
        notes: int = (await session.execute(select(func.count()).select_from(Note))).scalar_one()
    await ctx["progress"](100, f"{notes} notes")
    return notes


async def tag_note(
    ctx: dict[str, Any], *, note_id: str, tag: str, started: str | None = None, hold: str | None = None
) -> int:
    """Tag a note, once however often the job runs: the tag's id derives from the job id (a try that
    committed and died before arq recorded it adds nothing again), and it is written in one transaction
    (a try killed before its commit leaves nothing). With ``started`` (a Redis list) each try pushes its
    number there once its row is written; with ``hold`` it then waits, uncommitted, until something is
    pushed to that list (4 s at most), so a test can kill its worker mid-job. Returns the try."""
    job_try: int = ctx["job_try"]
    redis = ctx["kernel"].redis
    async with ctx["db_session"]() as session:
        row = {"id": uuid5(NAMESPACE_URL, ctx["job_id"]), "tenant_id": ctx["tenant_id"], "note_id": UUID(note_id)}
        await session.execute(insert(NoteTag).values(**row, tag=tag).on_conflict_do_nothing())
        if started:
            await redis.rpush(started, job_try)
        if hold:
            await redis.blpop([hold], timeout=4)
    return job_try


#: Tenants of this name fail their scheduled tally on purpose (a test shows the others still run).
FAILING_TENANT_NAME = "Fails On Purpose"


def tally_key(namespace: str, tenant_id: object) -> str:
    return f"{namespace}:sample-tally:{tenant_id}"


async def tally_notes(ctx: dict[str, Any]) -> int:
    """Scheduled per tenant: push ``{tenant_id, scope, notes, visible}`` to the tenant's tally list;
    ``visible`` counts every note the session can see without the ORM's tenant filter (row-level
    security alone)."""
    tenant = ctx["tenant"]
    if tenant.name == FAILING_TENANT_NAME:
        raise RuntimeError(f"tally of {tenant.slug} fails on purpose")
    async with ctx["db_session"]() as session:
        scope = (await session.execute(text("SELECT current_setting('inopsio.tenant_id', true)"))).scalar()
        notes = (await session.execute(select(func.count()).select_from(Note))).scalar_one()
        visible = (await session.execute(text("SELECT count(*) FROM sample_notes"))).scalar_one()
    report = {"tenant_id": str(ctx["tenant_id"]), "scope": scope, "notes": notes, "visible": visible}
    await ctx["kernel"].redis.rpush(
        tally_key(ctx["kernel"].settings.redis_namespace, ctx["tenant_id"]), msgspec.json.encode(report)
    )
    return int(notes)
