"""``GET /api/v1/jobs/{job_id}``: a job's status and progress, for the members of its tenant."""

from __future__ import annotations

from litestar import get
from litestar.params import FromPath

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.jobs.progress import JobState, job_state


@get("/api/v1/jobs/{job_id:str}", tags=["jobs"])
async def get_job(kernel: KernelDep, tenant: CurrentTenant, job_id: FromPath[str]) -> JobState:
    """Status (queued, in_progress, complete, failed), progress 0-100 and the job's last message.

    Another tenant's job, a platform job and an unknown (or expired) one all answer 404.
    """
    state, owner = await job_state(kernel.jobs, kernel.settings.redis_namespace, job_id)
    if state.status == "not_found" or owner != str(tenant.id):
        raise Problem(404, "job-not-found", "There is no such job in this tenant.")
    return state
