"""The kernel's quota feature: its usage tables, registered through the plugin hooks."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.quotas.models import DailyUsage, UsageGauge


@hookimpl
def register_models(register: Any) -> None:
    register(DailyUsage)
    register(UsageGauge)
