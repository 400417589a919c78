"""Progress of long jobs, for progress bars: a job reports ``await ctx["progress"](40, "Importing rows")``;
``GET /api/v1/jobs/{job_id}`` reads it back with the job's status.

Progress lives in Redis beside arq's own keys, a hash per job that expires a day after its last update.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import msgspec
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job, deserialize_result

from inopsio.jobs.queue import deserialize

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from inopsio.jobs.queue import JobQueue

PROGRESS_TTL_SECONDS = 24 * 3600
MAX_MESSAGE_LENGTH = 500
JobStatusName = Literal["queued", "in_progress", "complete", "failed", "not_found"]
#: What a job calls to report progress: ``await ctx["progress"](percent, message)``.
ProgressReporter = Callable[..., Awaitable[None]]


class JobState(msgspec.Struct, kw_only=True):
    """A job as the status API shows it."""

    id: str
    #: The registered job name (``crm.import_leads``); empty when the job is not found.
    name: str
    status: JobStatusName
    #: 0-100: the last value the job reported (100 once it completed).
    progress: int
    message: str | None = None
    #: Unix time of the last progress report.
    updated_at: float | None = None
    #: Tries started so far (1 for the first).
    tries: int = 0


def progress_key(namespace: str, job_id: str) -> str:
    return f"{namespace}:job-progress:{job_id}"


async def report_progress(
    redis: Redis, namespace: str, job_id: str, percent: float, message: str | None = None
) -> None:
    """Record that job ``job_id`` is ``percent`` (clamped to 0-100) done, with an optional message."""
    fields = {
        "percent": max(0, min(100, round(percent))),
        "message": (message or "")[:MAX_MESSAGE_LENGTH],
        "at": time.time(),
    }
    key = progress_key(namespace, job_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, PROGRESS_TTL_SECONDS)
        await pipe.execute()


def progress_reporter(redis: Redis, namespace: str, job_id: str) -> ProgressReporter:
    async def progress(percent: float, message: str | None = None) -> None:
        await report_progress(redis, namespace, job_id, percent, message)

    return progress


async def job_state(queue: JobQueue, namespace: str, job_id: str) -> tuple[JobState, str | None]:
    """The job's status and progress, and its tenant id (None for platform jobs), in one round trip."""
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.get(result_key_prefix + job_id)
        pipe.get(job_key_prefix + job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.get(retry_key_prefix + job_id)
        pipe.hgetall(progress_key(namespace, job_id))
        result_raw, job_raw, in_progress, tries_started, progress = await pipe.execute()
    reported = {k.decode(): v.decode() for k, v in progress.items()}
    percent = int(reported.get("percent", 0))
    message = reported.get("message") or None
    updated_at = float(reported["at"]) if "at" in reported else None
    status: JobStatusName
    if result_raw is not None:
        result = deserialize_result(result_raw, deserializer=deserialize)
        status = "complete" if result.success else "failed"
        name, kwargs, tries = result.function, result.kwargs, result.job_try
        if result.success:
            percent = 100
    elif job_raw is not None:
        job = deserialize_job(job_raw, deserializer=deserialize)
        status = "in_progress" if in_progress else "queued"
        name, kwargs, tries = job.function, job.kwargs, int(tries_started or 0)
    else:
        return JobState(id=job_id, name="", status="not_found", progress=0), None
    tenant_id = kwargs.get("tenant_id")
    state = JobState(
        id=job_id,
        name=name,
        status=status,
        progress=percent,
        message=message,
        updated_at=updated_at,
        tries=max(tries or 0, 0),
    )
    return state, str(tenant_id) if tenant_id else None
