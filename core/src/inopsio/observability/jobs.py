"""Observing one job try: its log context, its span (a child of the enqueuing request's) and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from arq import Retry

from inopsio.observability.context import JOB_ID_KEY, JOB_NAME_KEY, REQUEST_ID_KEY, current
from inopsio.tenancy.resolution import STATE_KEY

if TYPE_CHECKING:
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo


@contextmanager
def observe_job(
    kernel: Kernel,
    name: str,
    job_id: str,
    job_try: int,
    tenant: TenantInfo | None,
    carried: Mapping[str, str] | None,
) -> Iterator[None]:
    """Around one try: log lines name the job, its tenant and the request that queued it; the try is
    timed as ``complete``, ``retry`` (``arq.Retry``), ``failed`` (any other exception) or ``cancelled``."""
    state: dict[str, Any] = {JOB_ID_KEY: job_id, JOB_NAME_KEY: name, STATE_KEY: tenant}
    if carried and carried.get(REQUEST_ID_KEY):
        state[REQUEST_ID_KEY] = carried[REQUEST_ID_KEY]
    token = current.set(state)
    observability = getattr(kernel, "observability", None)
    outcome = "cancelled"
    started = time.perf_counter()
    try:
        if observability is None:
            yield
        else:
            with observability.tracing.job_span(name, job_id, job_try, carried):
                yield
        outcome = "complete"
    except Retry:
        outcome = "retry"
        raise
    except Exception:
        outcome = "failed"
        raise
    finally:
        if observability is not None:
            observability.metrics.observe_job(name, outcome, time.perf_counter() - started)
        current.reset(token)
