"""The sample plugin's job: reports where it ran (tenant, database scope, try) to a Redis list."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from sqlalchemy import func, select, text

from inopsio_sample.models import Note


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
