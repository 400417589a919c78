"""OpenTelemetry traces: a server span per request, continued into the jobs the request enqueues.

Off by default (``otel_exporter = "none"``): no tracer exists and the request path only checks
that. When on, the request's W3C trace context travels with each job it enqueues (in the job's
``_context`` keyword argument) and the worker's span for the job is a child of the request's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inopsio import __version__
from inopsio.observability.context import REQUEST_ID_KEY, current

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from inopsio.settings import Settings

log = logging.getLogger("inopsio.observability")
_propagator = TraceContextTextMapPropagator()


class _AsgiHeaders(Getter[Iterable[tuple[bytes, bytes]]]):
    """Reads ``traceparent`` / ``tracestate`` from an ASGI scope's header list."""

    def get(self, carrier: Iterable[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: Iterable[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_asgi_headers = _AsgiHeaders()


class Tracing:
    """This process's tracer, or none (tracing off)."""

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing:
        tracing = cls()
        if settings.otel_exporter != "none":
            tracing.use(build_provider(settings))
        return tracing

    def use(self, provider: TracerProvider | None) -> None:
        """Trace with ``provider`` from now on (``None``: stop tracing)."""
        self.provider = provider
        self.tracer = provider.get_tracer("inopsio", __version__) if provider is not None else None

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()

    def start_request_span(self, scope: Mapping[str, Any]) -> tuple[Span, object, str] | None:
        """Start the server span of an HTTP request (continuing the caller's trace, if it sent one)."""
        if self.tracer is None:
            return None
        parent = _propagator.extract(scope["headers"], getter=_asgi_headers)
        method: str = scope.get("method", "GET")
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        )
        return span, otel_context.attach(trace.set_span_in_context(span)), method

    @staticmethod
    def end_request_span(started: tuple[Span, object, str], route: str, status: int, request_id: str) -> None:
        span, token, method = started
        otel_context.detach(token)  # type: ignore[arg-type]
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("inopsio.request_id", request_id)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    @contextmanager
    def job_span(self, name: str, job_id: str, job_try: int, carried: Mapping[str, str] | None) -> Iterator[None]:
        """The span of one job try: a child of the enqueuing request's span when it carried one."""
        if self.tracer is None:
            yield
            return
        parent = _propagator.extract(dict(carried or {}))
        with self.tracer.start_as_current_span(
            f"job {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"inopsio.job.name": name, "inopsio.job.id": job_id, "inopsio.job.try": job_try},
        ):
            yield


def outgoing_job_context() -> dict[str, str]:
    """What a job carries from the code that enqueues it: the trace context and the request id."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    state = current.get()
    if state is not None and state.get(REQUEST_ID_KEY):
        carrier[REQUEST_ID_KEY] = state[REQUEST_ID_KEY]
    return carrier


def build_provider(settings: Settings) -> TracerProvider:
    """A tracer provider exporting in batches to the configured exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # pragma: no cover - depends on the installed extra
            raise RuntimeError(
                "otel_exporter = 'otlp' needs the OTLP exporter: pip install 'inopsio-core[otlp]'"
            ) from exc
        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint) if settings.otel_endpoint else OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
