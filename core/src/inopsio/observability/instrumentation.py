"""The process's observability (metrics, tracing) and the ASGI layer that observes every request.

``RequestObservation`` wraps Litestar's whole ASGI handler, so it sees every request, routed or
not, and answers first and last: it takes or makes the request id (``X-Request-ID``), echoes it,
makes it and the request's tenant and user the context of every log line, times the request into
one histogram series, and (only when tracing is on) opens the request's server span. Its cost per
request is a header scan, a context variable, a closure and one histogram observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from inopsio.observability.context import REQUEST_ID_HEADER, REQUEST_ID_KEY, current, request_id_from
from inopsio.observability.metrics import UNMATCHED_ROUTE, Metrics
from inopsio.observability.tracing import Tracing

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from inopsio.kernel import Kernel
    from inopsio.settings import Settings

log = logging.getLogger("inopsio.observability")
#: How often each process copies the event bus's and real-time hub's counts into its metrics.
SAMPLE_SECONDS = 5.0


class Observability:
    """Metrics and tracing of one process; ``kernel.observability``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.tracing = Tracing.from_settings(settings)

    def instrument(self, app: Litestar, default_headers: Sequence[tuple[str, str]] = ()) -> None:
        """Put the request observer around the app's whole ASGI handler (routing and errors included).

        ``default_headers`` go on every HTTP response that does not set them itself.
        """
        app.asgi_handler = RequestObservation(app.asgi_handler, self, default_headers)

    async def sample_forever(self, kernel: Kernel) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            try:
                self.metrics.sample(kernel)
            except Exception:
                log.warning("sampling metrics failed", exc_info=True)

    def close(self) -> None:
        self.metrics.process_exited()
        with contextlib.suppress(Exception):
            self.tracing.shutdown()


def _request_id_header(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value
    return None


class RequestObservation:
    """See the module doc."""

    def __init__(
        self, app: ASGIApp, observability: Observability, default_headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.app = app
        self.metrics = observability.metrics
        self.tracing = observability.tracing
        self.default_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in default_headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type: str = scope["type"]
        if scope_type != "http":
            if scope_type != "websocket":
                await self.app(scope, receive, send)
                return
            # A socket's log lines carry its id, tenant and user too; it is not timed.
            scope["state"][REQUEST_ID_KEY] = request_id_from(_request_id_header(scope))
            socket_context = current.set(scope["state"])
            try:
                await self.app(scope, receive, send)
            finally:
                current.reset(socket_context)
            return

        state = scope["state"]
        request_id = request_id_from(_request_id_header(scope))
        state[REQUEST_ID_KEY] = request_id
        context = current.set(state)
        echoed = (b"x-request-id", request_id.encode("ascii"))
        defaults = self.default_headers
        status = 500  # what the client sees if the app fails before it starts a response

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in defaults if header[0] not in present)
                headers.append(echoed)
                message["headers"] = headers
            await send(message)

        span = self.tracing.start_request_span(scope) if self.tracing.tracer is not None else None
        in_flight = self.metrics.requests_in_flight
        in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            in_flight.dec()
            route = scope.get("path_template") or UNMATCHED_ROUTE
            self.metrics.observe_request(route, scope["method"], status, elapsed)  # type: ignore[typeddict-item]
            if span is not None:
                self.tracing.end_request_span(span, route, status, request_id)
            current.reset(context)
