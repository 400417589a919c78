"""``GET /metrics``: the Prometheus exposition, behind ``metrics_token`` when one is set."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from inopsio.deps import KernelDep
from inopsio.errors import Problem
from inopsio.tenancy.resolution import TENANCY_OPT

log = logging.getLogger("inopsio.observability")
OUTBOX_QUERY_TIMEOUT = 2.0


def _check_token(request: Request[Any, Any, Any], token: str) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Problem(
            401,
            "metrics-token-required",
            "The metrics need the bearer token configured as INOPSIO_METRICS_TOKEN.",
            headers={"WWW-Authenticate": 'Bearer realm="inopsio-metrics"'},
        )


@get("/metrics", opt={TENANCY_OPT: "none"}, include_in_schema=False, tags=["health"])
async def metrics(request: Request[Any, Any, Any], kernel: KernelDep) -> Response[bytes]:
    """Prometheus metrics of this installation (every web process, in multiprocess mode)."""
    if kernel.settings.metrics_token:
        _check_token(request, kernel.settings.metrics_token)
    observed = kernel.observability.metrics
    observed.sample(kernel)
    try:
        await asyncio.wait_for(observed.sample_outbox(kernel), OUTBOX_QUERY_TIMEOUT)
    except Exception as exc:  # the rest of the metrics are still worth answering with
        log.warning("counting the event outbox failed: %s: %s", type(exc).__name__, exc)
    return Response(observed.render(), media_type=CONTENT_TYPE_LATEST)
