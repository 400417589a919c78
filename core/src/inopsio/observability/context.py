"""What the current log line, span or job is about: the request (or job) context of this task.

One context variable holds the ASGI scope's ``state`` dict of the request being served (or, in a
job, a dict with the same keys), so the request id, tenant and user are read from it only when a
line is logged: setting it costs one ``ContextVar.set`` per request, whatever the middleware
behind it adds to the state later.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import Any

from inopsio.identity.principal import PRINCIPAL_KEY
from inopsio.tenancy.resolution import STATE_KEY

REQUEST_ID_KEY = "request_id"
JOB_ID_KEY = "job_id"
JOB_NAME_KEY = "job_name"
#: The job keyword argument that carries the enqueuing request's id and trace context to the worker.
JOB_CONTEXT_KWARG = "_context"
REQUEST_ID_HEADER = b"x-request-id"
#: A request id we accept from a client or proxy: short and plain, so it is safe in logs and headers.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

#: The ``state`` of the request (or job) this task serves; None outside both.
current: ContextVar[dict[str, Any] | None] = ContextVar("inopsio_observed", default=None)

# Unique per process start (random prefix) and cheap to make (a counter): no entropy per request.
_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_prefix}{next(_counter):08x}"


def request_id_from(header: bytes | None) -> str:
    """The client's ``X-Request-ID`` when it is valid, else a new id."""
    if header is not None and _VALID_REQUEST_ID.fullmatch(header):
        return header.decode("ascii")
    return new_request_id()


def describe(state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Request id, tenant slug and id, user id and job of ``state`` (default: the current context)."""
    if state is None:
        state = current.get()
        if state is None:
            return {}
    fields: dict[str, Any] = {}
    request_id = state.get(REQUEST_ID_KEY)
    if request_id:
        fields["request_id"] = request_id
    tenant = state.get(STATE_KEY)
    if tenant is not None:
        fields["tenant"] = tenant.slug
        fields["tenant_id"] = str(tenant.id)
    principal = state.get(PRINCIPAL_KEY)
    if principal is not None:
        if principal.user_id is not None:
            fields["user_id"] = str(principal.user_id)
        if principal.api_key_id is not None:
            fields["api_key_id"] = str(principal.api_key_id)
    job_id = state.get(JOB_ID_KEY)
    if job_id:
        fields["job_id"] = job_id
        fields["job"] = state.get(JOB_NAME_KEY)
    return fields
