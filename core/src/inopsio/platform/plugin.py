"""The kernel's platform operator feature: its table and routes, through the plugin hooks."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.platform.controllers import PlatformController
from inopsio.platform.models import OperatorToken


@hookimpl
def register_models(register: Any) -> None:
    register(OperatorToken)


@hookimpl
def register_routes(register: Any) -> None:
    register(PlatformController)
