"""The one error format: RFC 9457 problem details, for every error the API returns.

Raise :class:`Problem` (or a subclass) anywhere; unknown routes, bad JSON, validation errors,
oversized bodies and unexpected exceptions are turned into problem documents too. No stack trace
ever reaches a client: unexpected errors are logged with their request id.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any, Protocol

import msgspec
import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from sqlalchemy.exc import DBAPIError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("inopsio.errors")


def problem_type(code: str) -> str:
    """The ``type`` URI of an Inopsio problem, e.g. ``urn:inopsio:problem:tenant-suspended``."""
    return f"urn:inopsio:problem:{code}"


class Problem(HTTPException):
    """An error the client can act on, rendered as a problem document.

    ``code`` names the kind of problem (it becomes the ``type`` URI); ``extra`` members are added
    to the document as they are (e.g. ``quota``, ``limit``, ``errors``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.code = code
        self.title = title or HTTPStatus(status).phrase
        #: Extension members of the problem document (RFC 9457 section 3.2).
        self.members = extra


def problem_document(
    status: int, type_: str, title: str, detail: str, instance: str | None, **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        doc["instance"] = instance
    doc.update(extra)
    return doc


def problem_bytes(status: int, code: str, detail: str, instance: str | None = None, **extra: Any) -> bytes:
    """A problem document encoded, for code that answers below Litestar (ASGI middleware)."""
    return msgspec.json.encode(
        problem_document(status, problem_type(code), HTTPStatus(status).phrase, detail, instance, **extra)
    )


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            entry = {"detail": str(item.get("message", ""))}
            if item.get("key"):
                entry["pointer"] = "/" + str(item["key"]).lstrip("$.").replace(".", "/")
            if item.get("source"):
                entry["source"] = str(item["source"])
            errors.append(entry)
    return errors


def _clean_validation_detail(detail: str) -> str:
    # Litestar prefixes msgspec's message with the method and URL; the client knows both.
    if " - " in detail and detail.startswith("Validation failed for"):
        return detail.split(" - ", 1)[1] or "the request is not valid"
    return detail


class ErrorRenderer(Protocol):
    """Answers an error in another form than a problem document, or returns ``None``.

    The app passes the ``render_error`` hook's caller: the kernel's web feature answers browsers
    with an error page (or the sign-in redirect). This module stays below the web layer.
    """

    def __call__(
        self, *, request: Request[Any, Any, Any], status: int, code: str, detail: str, members: dict[str, Any]
    ) -> Response[Any] | None: ...


class ErrorResponses:
    """The exception handlers of an app: problem documents, unless ``render_error`` answers first."""

    def __init__(self, render_error: ErrorRenderer | None = None) -> None:
        self.render_error = render_error

    def handlers(self) -> dict[Any, Any]:
        return {
            HTTPException: self.http_exception,
            DBAPIError: self.database_error,
            psycopg.Error: self.psycopg_error,
            Exception: self.internal_error,
        }

    def _rendered(
        self, request: Request[Any, Any, Any], status: int, code: str, detail: str, **members: Any
    ) -> Response[Any] | None:
        if self.render_error is None:
            return None
        try:
            return self.render_error(request=request, status=status, code=code, detail=detail, members=members)
        except Exception:  # the error page itself failed: fall back to the problem document
            log.exception("rendering the error page failed")
            return None

    def http_exception(self, request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        status = exc.status_code
        instance = request.url.path
        headers = dict(exc.headers or {})
        if status != 422:  # a form's validation errors are answered as data, to browsers too
            code = exc.code if isinstance(exc, Problem) else ""
            detail = exc.detail if status < 500 else "Something went wrong on our side."
            if status == 404:
                detail = exc.detail if isinstance(exc, Problem) else "There is nothing at this address."
            rendered = self._rendered(request, status, code, detail)
            if rendered is not None:
                return rendered
        if isinstance(exc, Problem):
            body = problem_document(status, problem_type(exc.code), exc.title, exc.detail, instance, **exc.members)
        elif isinstance(exc.__cause__, SerializationException):
            # Litestar turns a body it cannot decode into a bare 400 ClientException.
            body = problem_document(
                status,
                problem_type("malformed-json"),
                "Invalid request",
                "The request body is not valid JSON.",
                instance,
            )
        elif isinstance(exc, ValidationException):
            detail = _clean_validation_detail(exc.detail)
            if "JSON is malformed" in detail or "malformed" in detail.lower():
                code, detail = "malformed-json", "The request body is not valid JSON."
            else:
                code = "validation-error"
            body = problem_document(
                status, problem_type(code), "Invalid request", detail, instance, errors=_validation_errors(exc)
            )
        else:
            code = {
                404: "not-found",
                405: "method-not-allowed",
                413: "request-too-large",
                401: "unauthorized",
                403: "forbidden",
                429: "too-many-requests",
            }.get(status, "http-error")
            detail = exc.detail if status < 500 else HTTPStatus(status).description
            if status == 404:
                detail = "There is nothing at this address."
            elif status == 413:
                detail = "The request body is larger than this endpoint accepts."
            elif status == 405:
                detail = f"{request.method} is not allowed here."
            body = problem_document(status, problem_type(code), HTTPStatus(status).phrase, detail, instance)
        return Response(
            content=msgspec.json.encode(body),
            status_code=status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=headers,
        )

    def internal_error(self, request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        # Without a request id from upstream, make one: it ties the client's report to the logged traceback.
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id)
        rendered = self._rendered(request, 500, "internal-error", "", request_id=request_id)
        if rendered is not None:
            return rendered
        body = problem_document(
            500,
            problem_type("internal-error"),
            "Internal Server Error",
            "Something went wrong on our side. It has been logged; quote the request id if you report it.",
            request.url.path,
            request_id=request_id,
        )
        return Response(content=msgspec.json.encode(body), status_code=500, media_type=PROBLEM_MEDIA_TYPE)

    def database_error(self, request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
        """PostgreSQL refuses NUL in text; any JSON string field may carry one (``"\\u0000"``): a 400, not a 500.

        The statement failed, so its transaction rolled back: nothing of the request was stored.
        """
        # psycopg refuses NUL in text parameters; PostgreSQL refuses \\u0000 in jsonb (22P05).
        if "NUL (0x00)" not in str(exc.orig) and getattr(exc.orig, "sqlstate", None) != "22P05":
            return self.internal_error(request, exc)
        return _nul_in_text(request)

    def psycopg_error(self, request: Request[Any, Any, Any], exc: psycopg.Error) -> Response[Any]:
        """Errors of the one-round-trip reader (plain psycopg, no SQLAlchemy wrapper).

        No connection to be had (the server is down or restarting, or every read connection stayed busy):
        a 503 the client can retry. NUL in a text parameter: the same 400 as through a session.
        """
        if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            log.warning("database unavailable for a read: %s", exc)
            body = problem_document(
                503,
                problem_type("database-unavailable"),
                "Service Unavailable",
                "The database cannot be reached right now. Nothing was changed; try again in a few seconds.",
                request.url.path,
            )
            return Response(
                content=msgspec.json.encode(body),
                status_code=503,
                media_type=PROBLEM_MEDIA_TYPE,
                headers={"Retry-After": "5"},
            )
        if "NUL (0x00)" in str(exc) or exc.sqlstate == "22P05":
            return _nul_in_text(request)
        return self.internal_error(request, exc)


def _nul_in_text(request: Request[Any, Any, Any]) -> Response[Any]:
    body = problem_document(
        400,
        problem_type("invalid-text"),
        "Invalid request",
        "Text must not contain the NUL character (\\u0000).",
        request.url.path,
    )
    return Response(content=msgspec.json.encode(body), status_code=400, media_type=PROBLEM_MEDIA_TYPE)


def exception_handlers(render_error: ErrorRenderer | None = None) -> dict[Any, Any]:
    """Litestar's ``exception_handlers`` for an app; ``render_error`` may answer an error first."""
    return ErrorResponses(render_error).handlers()


__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ErrorRenderer",
    "MediaType",
    "Problem",
    "exception_handlers",
    "problem_bytes",
    "problem_type",
]
