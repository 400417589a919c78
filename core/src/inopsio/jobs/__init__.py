"""Background jobs on arq: plugins register functions and cron jobs, ``kernel.jobs.enqueue`` queues them,
and a worker built from the same registry runs each one in its tenant's scope, with retries and timeouts.
Cron jobs registered with ``per_tenant=True`` run once per tenant that has their module on."""

from inopsio.jobs.definitions import JobContext, JobDefinition, PermanentJobError, collect_jobs
from inopsio.jobs.queue import JobQueue
from inopsio.jobs.tenants import TenantRunsFailed, fan_out, for_each_tenant, tenant_session
from inopsio.jobs.worker import DrainResult, build_worker, drain, run_worker

__all__ = [
    "DrainResult",
    "JobContext",
    "JobDefinition",
    "JobQueue",
    "PermanentJobError",
    "TenantRunsFailed",
    "build_worker",
    "collect_jobs",
    "drain",
    "fan_out",
    "for_each_tenant",
    "run_worker",
    "tenant_session",
]
