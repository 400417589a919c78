"""Putting jobs on the queue: ``await kernel.jobs.enqueue("crm.import_leads", tenant_id=..., file_id=...)``.

Jobs travel through Redis as MessagePack (msgspec), never pickle, so their arguments are plain data:
strings, numbers, booleans, lists, dicts, UUIDs and datetimes. The queue and job ids carry the
installation's Redis namespace, so several installations can share one Redis.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from arq.connections import ArqRedis
from arq.jobs import Job, JobResult, JobStatus

from inopsio.observability.context import JOB_CONTEXT_KWARG
from inopsio.observability.tracing import outgoing_job_context

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

    from inopsio.jobs.definitions import JobDefinition
    from inopsio.settings import Settings


def _encode_unknown(value: Any) -> Any:
    # A failed job's result is its exception: keep what it said, as text.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise NotImplementedError(f"a job argument of type {type(value).__name__} cannot be queued")


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_unknown)
_decoder = msgspec.msgpack.Decoder()


def serialize(value: Any) -> bytes:
    return _encoder.encode(value)


def deserialize(data: bytes) -> Any:
    return _decoder.decode(data)


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_namespace}:jobs"


def arq_redis(pool: ConnectionPool, settings: Settings) -> ArqRedis:
    """An arq client on ``pool`` speaking this installation's queue and serialisation."""
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_name(settings),
    )


class JobQueue:
    """Enqueues registered jobs; shares the kernel's Redis connection pool."""

    def __init__(self, settings: Settings, pool: ConnectionPool, definitions: dict[str, JobDefinition]) -> None:
        self.settings = settings
        self.definitions = definitions
        self.redis = arq_redis(pool, settings)
        self._id_prefix = f"{settings.redis_namespace}:"

    async def enqueue(
        self,
        name: str,
        *,
        tenant_id: UUID | None,
        _job_id: str | None = None,
        _defer_by: float | dt.timedelta | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Queue job ``name`` for ``tenant_id`` (None: a platform job) with keyword arguments.

        Cron jobs are the worker's to queue, except that a per-tenant one may be run now for one tenant.

        ``_job_id`` makes the call idempotent: while a job with that id is queued, running, or its
        result is kept, enqueueing it again does nothing and returns None. ``_defer_by`` (seconds
        or a timedelta) delays the first try. Returns the job id.
        """
        definition = self.definitions.get(name)
        if definition is None:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise LookupError(f"no job {name!r} is registered (registered: {known})")
        if definition.cron is not None and not (definition.per_tenant and tenant_id is not None):
            # A per-tenant scheduled job may also be run now for one tenant (a missed day, a test);
            # a platform cron job only ever runs on its schedule.
            raise LookupError(f"job {name!r} is a cron job; the worker schedules it")
        serialize(kwargs)  # refuse arguments that cannot travel, here rather than in the worker
        # The request's id and trace context travel with the job, so its logs and span join the request's.
        carried = outgoing_job_context()
        if carried:
            kwargs[JOB_CONTEXT_KWARG] = carried
        job = await self.redis.enqueue_job(
            name,
            _job_id=self._id_prefix + _job_id if _job_id else None,
            _defer_by=_defer_by,
            tenant_id=str(tenant_id) if tenant_id is not None else None,
            **kwargs,
        )
        return job.job_id if job is not None else None

    def _job(self, job_id: str) -> Job:
        return Job(job_id, self.redis, _queue_name=self.redis.default_queue_name, _deserializer=deserialize)

    async def status(self, job_id: str) -> JobStatus:
        """deferred, queued, in_progress, complete or not_found."""
        return await self._job(job_id).status()

    async def result(self, job_id: str) -> JobResult | None:
        """The outcome of a finished job (``success``, ``result``, ``job_try``) while it is kept, else None."""
        return await self._job(job_id).result_info()
