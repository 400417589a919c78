"""Log lines as JSON (production) or for a terminal, each carrying the request id, tenant and user.

Everything logs through the standard library (``logging.getLogger("inopsio.crm")``) or structlog;
both end in one handler on the root logger whose formatter adds the context of the line: the
request id, tenant, user and job of the request or job being served, and the trace and span ids
when tracing is on. uvicorn's loggers are routed there too.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from opentelemetry import trace

from inopsio.observability.context import describe

_HANDLER_MARK = "_inopsio_log_handler"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def add_request_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current request's (or job's) id, tenant and user, and trace ids."""
    for key, value in describe().items():
        event_dict.setdefault(key, value)
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_context,
    ]


def build_formatter(log_format: str) -> logging.Formatter:
    """The formatter of every line: JSON objects (``json``) or coloured key=value (``console``)."""
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        final = [structlog.processors.format_exc_info, renderer]
    else:
        # Tracebacks without their frames' local variables: those hold passwords, tokens and
        # customers' data, which have no place in a log.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        final = [renderer]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


def configure_logging(log_format: str, level: str = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log line (stdlib, structlog, uvicorn) to ``stream`` (stderr) in ``log_format``.

    Calling it again replaces the handler it installed before; other handlers (a test runner's)
    stay. Returns the handler.
    """
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(build_formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler
