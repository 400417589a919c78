"""Observability: Prometheus metrics, OpenTelemetry traces that follow a request into its jobs, and
log lines that carry the request id, tenant and user."""

from inopsio.observability.instrumentation import Observability, RequestObservation
from inopsio.observability.logs import configure_logging
from inopsio.observability.metrics import Metrics
from inopsio.observability.tracing import Tracing, outgoing_job_context

__all__ = ["Metrics", "Observability", "RequestObservation", "Tracing", "configure_logging", "outgoing_job_context"]
