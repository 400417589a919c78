"""The kernel's observability feature through the plugin hooks: the ``/metrics`` route."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.observability.controllers import metrics


@hookimpl
def register_routes(register: Any) -> None:
    register(metrics)
