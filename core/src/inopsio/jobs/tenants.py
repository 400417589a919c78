"""Background work across tenants: the kernel's fan-out of per-tenant scheduled jobs, and
``for_each_tenant`` / ``tenant_session`` for jobs that walk the tenants themselves.

Which tenants a job visits is the kernel's decision, as for hooks: only active tenants, and only
those that have the job's module switched on. A plugin never checks "am I enabled here?".
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from inopsio.plugins import KERNEL

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo, TenantStatus

log = logging.getLogger("inopsio.jobs")
T = TypeVar("T")
#: Tenants read per query while walking them (keyset-paginated by slug).
TENANT_PAGE_SIZE = 200


class TenantRunsFailed(Exception):
    """Raised by :func:`for_each_tenant` after every tenant had its turn, when some of them failed."""

    def __init__(self, failed: dict[UUID, BaseException], results: dict[UUID, Any]) -> None:
        self.failed = failed
        self.results = results
        listed = "; ".join(f"{tid}: {type(exc).__name__}: {exc}" for tid, exc in list(failed.items())[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} of {len(failed) + len(results)} tenant(s) failed: {listed}{more}")


async def tenants_with(
    kernel: Kernel, *, module: str | None = None, statuses: Iterable[TenantStatus] = ("active",)
) -> AsyncIterator[TenantInfo]:
    """Every tenant in one of ``statuses`` that has ``module`` switched on (any module: ``None``)."""
    for status in statuses:
        after: str | None = None
        while True:
            tenants, _ = await kernel.tenants.list(status=status, after=after, limit=TENANT_PAGE_SIZE)
            for tenant in tenants:
                if module is None or module == KERNEL or tenant.module_enabled(module):
                    yield tenant
            if len(tenants) < TENANT_PAGE_SIZE:
                break
            after = tenants[-1].slug


def tenant_session(kernel: Kernel, tenant_id: UUID) -> AbstractAsyncContextManager[AsyncSession]:
    """``async with tenant_session(kernel, tenant_id) as session``: an ORM session in one transaction
    scoped to that tenant (row-level security and the ORM's tenant filter); commits when the block ends."""
    if tenant_id is None:
        # The platform scope sees no tenant's rows: asking for it here is always a mistake.
        raise ValueError("tenant_session needs a tenant id")
    return kernel.db.session(tenant_id)


async def for_each_tenant(
    kernel: Kernel,
    function: Callable[[TenantInfo, AsyncSession], Awaitable[T]],
    *,
    module: str | None = None,
    include_suspended: bool = False,
) -> dict[UUID, T]:
    """``await function(tenant, session)`` for every active tenant (with ``module`` on, when given),
    each in its own transaction scoped to that tenant; returns the results by tenant id.

    A tenant whose call raises is rolled back alone and the walk goes on; once every tenant had its
    turn, :class:`TenantRunsFailed` names the failed ones (so a job fails and is retried: make
    ``function`` idempotent). ``include_suspended`` also visits suspended tenants, for duties that go
    on while a tenant is locked out (deleting data past its retention).
    """
    statuses: tuple[TenantStatus, ...] = ("active", "suspended") if include_suspended else ("active",)
    results: dict[UUID, T] = {}
    failed: dict[UUID, BaseException] = {}
    async for tenant in tenants_with(kernel, module=module, statuses=statuses):
        try:
            async with tenant_session(kernel, tenant.id) as session:
                results[tenant.id] = await function(tenant, session)
        except Exception as exc:
            log.warning("tenant %s (%s) failed: %s: %s", tenant.slug, tenant.id, type(exc).__name__, exc)
            failed[tenant.id] = exc
    if failed:
        raise TenantRunsFailed(failed, results)
    return results


def run_stamp(scheduled_for: dt.datetime) -> str:
    """The scheduled time as it appears in a per-tenant run's job id (UTC, to the second)."""
    if scheduled_for.tzinfo is None:
        raise ValueError("scheduled_for must be timezone-aware")
    return scheduled_for.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


async def fan_out(kernel: Kernel, name: str, scheduled_for: dt.datetime) -> int:
    """Queue per-tenant scheduled job ``name`` once for each active tenant with its module on, for the
    run scheduled at ``scheduled_for``; returns how many were queued.

    Each tenant's run is an arq job of its own (its own retries; a failing tenant holds up no other)
    with the id ``<job>:<tenant id>:<scheduled time>``: a second fan-out of the same scheduled run (a
    second worker, a retry) queues nothing for a tenant whose run is queued, running, or finished
    within the hour arq keeps results.
    """
    definition = kernel.jobs.definitions.get(name)
    if definition is None or not definition.per_tenant:
        raise LookupError(f"job {name!r} is not a per-tenant scheduled job")
    stamp = run_stamp(scheduled_for)
    queued = 0
    async for tenant in tenants_with(kernel, module=definition.module):
        job_id = await kernel.jobs.enqueue(name, tenant_id=tenant.id, _job_id=f"{name}:{tenant.id}:{stamp}")
        queued += job_id is not None
    log.info("%s: queued %d tenant run(s) for %s", name, queued, stamp)
    return queued


def scheduled_time(ctx: dict[str, Any]) -> dt.datetime:
    """The time a cron run was scheduled for, from its arq job id (``<name>:<unix ms>``, the same on
    every worker, which is what makes the run unique), else from its queue score."""
    suffix = str(ctx.get("job_id", "")).rsplit(":", 1)[-1]
    millis = int(suffix) if suffix.isdigit() else int(ctx["score"])
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
