"""The kernel's jobs feature through the plugin hooks: the job-status route."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.jobs.controllers import get_job


@hookimpl
def register_routes(register: Any) -> None:
    register(get_job)
