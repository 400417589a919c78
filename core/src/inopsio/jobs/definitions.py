"""What a registered job is, and collecting them from the ``register_jobs`` hook."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inopsio.plugins import KERNEL

if TYPE_CHECKING:
    from inopsio.plugins import PluginRegistry
    from inopsio.settings import Settings

#: What a job function receives first: arq's context (``job_id``, ``job_try``) plus ``kernel``,
#: ``tenant_id`` (a UUID, or None for platform jobs), ``tenant`` (its TenantInfo) and ``db_session``
#: (``async with ctx["db_session"]() as session``: a transaction scoped to the job's tenant) and
#: ``progress`` (``await ctx["progress"](40, "Importing rows")``: 0-100 and a message, shown by
#: ``GET /api/v1/jobs/{job_id}``).
JobContext = dict[str, Any]
JobFunction = Callable[..., Awaitable[Any]]
#: arq's cron fields a plugin may set (each an int or a set of ints), plus ``run_at_startup``.
CRON_FIELDS = frozenset({"month", "day", "weekday", "hour", "minute", "second", "run_at_startup"})


class PermanentJobError(Exception):
    """Raise from a job to fail it at once, without the remaining retries (the input can never work)."""


@dataclass(frozen=True)
class JobDefinition:
    name: str
    function: JobFunction
    plugin: str
    max_tries: int = 5
    #: Seconds one try may run before it is stopped (and retried, while tries are left).
    timeout: float = 300.0
    #: Seconds before the second try; each later try waits twice as long as the one before.
    retry_delay: float = 10.0
    #: For cron jobs: arq's cron fields (``{"minute": {0, 30}}``); None for jobs run on demand.
    cron: dict[str, Any] | None = field(default=None)
    #: For cron jobs: run once per active tenant with the job's module on, each as its own job in its
    #: tenant's scope (see :mod:`inopsio.jobs.tenants`), instead of once as a platform job.
    per_tenant: bool = False
    #: The module tenants switch on and off that the job belongs to (``kernel`` for the kernel's).
    module: str = "kernel"

    def backoff(self, job_try: int) -> float:
        """Seconds to wait after try number ``job_try`` (1-based) failed; capped at an hour."""
        return float(min(self.retry_delay * 2 ** max(job_try - 1, 0), 3600.0))


def collect_jobs(registry: PluginRegistry, settings: Settings) -> dict[str, JobDefinition]:
    """Every plugin's jobs by name; names are ``<plugin>.<job>`` (``kernel.<job>`` for the kernel)."""
    jobs: dict[str, JobDefinition] = {}

    def validate(plugin: str, item: Any) -> None:
        args, kwargs = item if isinstance(item, tuple) else ((item,), {})
        if len(args) != 1 or not inspect.iscoroutinefunction(args[0]):
            raise ValueError("register(function, name=..., ...) takes one async function")
        unknown = set(kwargs) - {"name", "max_tries", "timeout", "retry_delay", "cron", "per_tenant"}
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}")
        name = str(kwargs.get("name") or "")
        namespace = KERNEL if registry.infos[plugin].is_kernel else plugin
        if not name.startswith(namespace + ".") or len(name) <= len(namespace) + 1:
            raise ValueError(f"job name {name!r} must start with {namespace + '.'!r}")
        if name in jobs:
            raise ValueError(f"job {name!r} is registered twice")
        cron = kwargs.get("cron")
        if cron is not None and (not isinstance(cron, dict) or not cron or set(cron) - CRON_FIELDS):
            raise ValueError(f"cron takes a dict of {', '.join(sorted(CRON_FIELDS))}")
        per_tenant = kwargs.get("per_tenant", False)
        if not isinstance(per_tenant, bool) or (per_tenant and cron is None):
            raise ValueError("per_tenant=True schedules a cron job per tenant: it needs cron={...}")
        max_tries = int(kwargs.get("max_tries", 5))
        timeout = float(kwargs.get("timeout", 300.0))
        retry_delay = float(kwargs.get("retry_delay", 10.0))
        if max_tries < 1 or timeout <= 0 or retry_delay < 0:
            raise ValueError("max_tries must be >= 1, timeout > 0 and retry_delay >= 0")
        jobs[name] = JobDefinition(
            name=name,
            function=args[0],
            plugin=plugin,
            max_tries=max_tries,
            timeout=timeout,
            retry_delay=retry_delay,
            cron=cron,
            per_tenant=per_tenant,
            module=registry.module_of(plugin),
        )

    registry.collect("register_jobs", validate, settings=settings)
    return jobs
