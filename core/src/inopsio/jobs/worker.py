"""Running jobs: an arq Worker built from the registered jobs, each try in its tenant's scope.

Any exception retries the job after a growing delay until its ``max_tries`` are spent (so a job
must be idempotent: it may run again after a partial run); ``PermanentJobError`` fails it at once.
A try that outlives its ``timeout`` is cancelled and counts as a failure.

A worker holds each running job under a short lease (``job_lease_seconds``) that it renews while the
job runs, so a job whose worker died (killed, machine lost) is run again by another worker soon after,
rather than when the longest job timeout of the installation has passed (arq's own in-progress expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from arq import Retry, cron, func
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.asyncio import ConnectionPool

from inopsio.jobs.definitions import JobContext, JobDefinition, PermanentJobError
from inopsio.jobs.progress import progress_reporter
from inopsio.jobs.queue import arq_redis, deserialize, queue_name, serialize
from inopsio.jobs.tenants import fan_out, scheduled_time
from inopsio.observability.jobs import observe_job

if TYPE_CHECKING:
    from inopsio.kernel import Kernel

log = logging.getLogger("inopsio.jobs")
#: arq's own timeout is a backstop behind ours (which retries); it only fires if a job ignores cancellation.
ARQ_TIMEOUT_MARGIN = 30.0


class JobTimedOut(Exception):
    """A try ran longer than its job's timeout."""


def _runner(definition: JobDefinition) -> Any:
    async def run(
        ctx: dict[str, Any], *, tenant_id: str | None = None, _context: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        kernel: Kernel = ctx["kernel"]
        tid = UUID(tenant_id) if tenant_id else None
        tenant = None
        if tid is not None:
            tenant = await kernel.tenants.directory.get_by_id(tid)
            if tenant is None:
                log.warning("job %s (%s): tenant %s no longer exists; dropped", definition.name, ctx["job_id"], tid)
                return None
            if definition.per_tenant and not (tenant.is_active and tenant.module_enabled(definition.module)):
                # Suspended, or the module switched off, since its run was queued: the run is not due.
                log.info(
                    "job %s (%s): tenant %s is suspended or has %s off; skipped",
                    definition.name,
                    ctx["job_id"],
                    tenant.slug,
                    definition.module,
                )
                return None
        job_ctx: JobContext = {
            **ctx,
            "tenant_id": tid,
            "tenant": tenant,
            "db_session": functools.partial(kernel.db.session, tid),
            "progress": progress_reporter(kernel.redis, kernel.settings.redis_namespace, ctx["job_id"]),
        }
        job_try: int = ctx.get("job_try") or 1
        with observe_job(kernel, definition.name, ctx["job_id"], job_try, tenant, _context):
            try:
                try:
                    async with asyncio.timeout(definition.timeout):
                        return await definition.function(job_ctx, **kwargs)
                except TimeoutError as exc:
                    raise JobTimedOut(f"{definition.name} ran longer than {definition.timeout:g}s") from exc
            except PermanentJobError:
                raise
            except Exception as exc:
                if job_try >= definition.max_tries:
                    raise
                delay = definition.backoff(job_try)
                log.warning(
                    "job %s (%s) try %d/%d failed (%s: %s); retrying in %.1fs",
                    definition.name,
                    ctx["job_id"],
                    job_try,
                    definition.max_tries,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                raise Retry(defer=delay) from exc

    run.__qualname__ = run.__name__ = definition.name
    return run


def _fan_out_definition(definition: JobDefinition) -> JobDefinition:
    """The platform cron job that queues one run of per-tenant job ``definition`` per tenant."""

    async def queue_tenant_runs(ctx: JobContext) -> int:
        return await fan_out(ctx["kernel"], definition.name, scheduled_time(ctx))

    # Queueing is idempotent per (job, tenant, scheduled time), so the fan-out may simply be retried.
    return JobDefinition(
        name=f"{definition.name}:fan-out",
        function=queue_tenant_runs,
        plugin=definition.plugin,
        max_tries=3,
        timeout=300.0,
        retry_delay=10.0,
        cron=definition.cron,
        module=definition.module,
    )


class LeasedWorker(Worker):
    """arq's Worker whose claim on a running job is a short lease, renewed while the job runs."""

    lease_seconds: float = 30.0

    async def main(self) -> None:
        renewal = asyncio.create_task(self._renew_leases())
        try:
            await super().main()
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            if not running or self._pool is None:
                continue
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:  # PEXPIRE leaves a finished job's deleted key deleted
                        pipe.pexpire(in_progress_key_prefix + job_id, int(self.lease_seconds * 1000))
                    await pipe.execute()
            except Exception:
                log.warning("renewing the leases of %d running job(s) failed", len(running), exc_info=True)


def build_worker(
    kernel: Kernel,
    *,
    burst: bool = False,
    with_cron: bool = True,
    handle_signals: bool = False,
    poll_delay: float = 0.5,
    max_jobs: int = 10,
) -> Worker:
    """An arq Worker for every registered job, on its own Redis connections (arq closes them)."""
    settings = kernel.settings
    assert settings.redis_url is not None
    pool = arq_redis(ConnectionPool.from_url(settings.redis_url), settings)
    functions = []
    cron_jobs = []
    for definition in kernel.jobs.definitions.values():
        common = {"timeout": definition.timeout + ARQ_TIMEOUT_MARGIN, "max_tries": definition.max_tries}
        if definition.cron is None or definition.per_tenant:
            functions.append(func(_runner(definition), name=definition.name, **common))  # type: ignore[arg-type]
        if definition.per_tenant and with_cron:
            fan_out_job = _fan_out_definition(definition)
            cron_jobs.append(
                cron(
                    _runner(fan_out_job),
                    name=f"{settings.redis_namespace}:{fan_out_job.name}",
                    **definition.cron,  # type: ignore[arg-type]
                    timeout=fan_out_job.timeout + ARQ_TIMEOUT_MARGIN,
                    max_tries=fan_out_job.max_tries,
                )
            )
        elif definition.cron is not None and with_cron:
            # The name is what arq makes the unique per-run id from: keep it in our namespace.
            cron_jobs.append(
                cron(
                    _runner(definition),
                    name=f"{settings.redis_namespace}:{definition.name}",
                    **definition.cron,
                    **common,  # type: ignore[arg-type]
                )
            )
    worker = LeasedWorker(
        functions,
        cron_jobs=cron_jobs,
        queue_name=queue_name(settings),
        redis_pool=pool,
        burst=burst,
        handle_signals=handle_signals,
        poll_delay=poll_delay,
        max_jobs=max_jobs,
        # On SIGTERM/SIGINT running jobs get this long to finish before they are cancelled and re-queued.
        job_completion_wait=10 if handle_signals else 0,
        ctx={"kernel": kernel},
        job_serializer=serialize,
        job_deserializer=deserialize,
        keep_result=3600,
    )
    # arq would hold a job for the longest timeout of all jobs (an hour for some) after its worker died.
    worker.lease_seconds = worker.in_progress_timeout_s = settings.job_lease_seconds
    return worker


async def stop_worker(worker: Worker, grace_seconds: float = 10.0) -> None:
    """Take no new jobs, let running ones finish for ``grace_seconds``, then cancel (arq re-queues them)."""
    worker.allow_pick_jobs = False
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=grace_seconds)
    if worker.main_task is not None:
        worker.main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.main_task
    await worker.close()


async def run_worker(kernel: Kernel, *, handle_signals: bool = False) -> None:
    """Run a worker until cancelled (in-process) or signalled (``inopsio worker``); stops gracefully."""
    worker = build_worker(kernel, handle_signals=handle_signals)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        await asyncio.shield(stop_worker(worker))
        raise
    finally:
        if worker._pool is not None:  # stopped by a signal: arq cancelled its main task
            await worker.close()


@dataclass(frozen=True)
class DrainResult:
    complete: int
    failed: int
    retried: int


async def drain(kernel: Kernel, *, max_seconds: float = 60.0) -> DrainResult:
    """Run every queued job (and the retries they schedule) until the queue is empty, in this loop."""
    worker = build_worker(kernel, burst=True, with_cron=False, poll_delay=0.05)
    try:
        async with asyncio.timeout(max_seconds):
            await worker.async_run()
    finally:
        await worker.close()
    return DrainResult(complete=worker.jobs_complete, failed=worker.jobs_failed, retried=worker.jobs_retried)
