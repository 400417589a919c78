"""Prometheus metrics of one process: requests, jobs, the event outbox and WebSocket connections.

Labels stay few and bounded: a request is counted under its route *template* (``/api/v1/sample/
notes/{note_id}``), never its raw path, and never under its tenant.

Several web processes (``inopsio serve --workers N``, uvicorn behind one socket) cannot be scraped
one by one, so they use prometheus_client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR``
set (``serve`` sets it to ``<data_dir>/metrics`` when it starts more than one process), every
process writes its samples to files there and ``/metrics`` on any of them adds them all up.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from sqlalchemy import text

if TYPE_CHECKING:
    from inopsio.kernel import Kernel

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def prepare_multiprocess_dir(path: Path) -> None:
    """Start ``path`` empty (samples of dead processes from an earlier run would be added up) and
    point this process and its children at it; call before any worker process starts."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(path)


class Metrics:
    """The process's collectors, in a registry of their own (no module-level state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        registry = self.registry
        self.request_duration = Histogram(
            "inopsio_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "inopsio_http_requests_in_flight",
            "HTTP requests being answered now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.job_duration = Histogram(
            "inopsio_job_duration_seconds",
            "Time one try of a job ran, by job and outcome (complete, retry, failed, cancelled).",
            ["job", "outcome"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_failures = Counter(
            "inopsio_job_failures",
            "Job tries that raised, by job (retried or not).",
            ["job"],
            registry=registry,
        )
        self.events_delivered = Counter(
            "inopsio_events_delivered",
            "Domain events dispatched from the outbox (rate() of it: events per second).",
            registry=registry,
        )
        self.outbox_lag = Gauge(
            "inopsio_outbox_lag_seconds",
            "Seconds from an event's commit to its dispatch, last dispatched batch.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "inopsio_outbox_pending_events",
            "Events in the outbox not yet delivered to every handler (due now or waiting for a retry).",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.outbox_oldest_due = Gauge(
            "inopsio_outbox_oldest_due_seconds",
            "How long the oldest event due for dispatch has waited.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.websocket_connections = Gauge(
            "inopsio_websocket_connections",
            "Open WebSocket connections.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        if not self.multiprocess:
            ProcessCollector(registry=registry)
        self._request_series: dict[tuple[str, str, int], Any] = {}
        self._delivered_seen = 0

    # -- the request path: one dictionary lookup and one observation ---------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:  # a client chooses the method: keep its label values bounded
            method = "OTHER"
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            status_class = STATUS_CLASSES[status // 100] if 0 <= status < 600 else "5xx"
            series = self.request_duration.labels(route, method, status_class)
            self._request_series[key] = series
        series.observe(seconds)

    def observe_job(self, job: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(job, outcome).observe(seconds)
        if outcome in ("retry", "failed"):
            self.job_failures.labels(job).inc()

    # -- sampled state -------------------------------------------------------------------------------

    def sample(self, kernel: Kernel) -> None:
        """Copy what the event bus and real-time hub count into the collectors (cheap, no I/O)."""
        events = getattr(kernel, "events", None)
        if events is not None:
            delivered = int(events.delivered)
            if delivered < self._delivered_seen:  # a new bus: count from its start
                self._delivered_seen = 0
            if delivered > self._delivered_seen:
                self.events_delivered.inc(delivered - self._delivered_seen)
                self._delivered_seen = delivered
            self.outbox_lag.set(float(events.last_lag))
        connections = _connection_count(getattr(kernel, "realtime", None))
        if connections is not None:
            self.websocket_connections.set(connections)

    async def sample_outbox(self, kernel: Kernel) -> None:
        """Count the outbox's pending events (one query; at scrape time only)."""
        async with kernel.db.transaction(None) as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - "
                        "min(available_at) FILTER (WHERE available_at <= now())), 0) AS oldest FROM event_pending"
                    )
                )
            ).one()
        self.outbox_pending.set(int(row.pending))
        self.outbox_oldest_due.set(max(0.0, float(row.oldest)))

    # -- exposition ----------------------------------------------------------------------------------

    def exposition_registry(self) -> CollectorRegistry:
        """What to expose: this process's registry, or every process's files in multiprocess mode."""
        if not self.multiprocess:
            return self.registry
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def render(self) -> bytes:
        return generate_latest(self.exposition_registry())

    def process_exited(self) -> None:
        """Drop this process's live gauges (in flight, connections) from the shared files."""
        if self.multiprocess:
            prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _connection_count(realtime: Any) -> int | None:
    """``kernel.realtime.connections``: a number, a sized collection, or a callable giving either."""
    connections = getattr(realtime, "connections", None)
    if connections is None:
        return None
    if callable(connections):
        connections = connections()
    if isinstance(connections, int | float):
        return int(connections)
    try:
        return len(connections)
    except TypeError:
        return None
