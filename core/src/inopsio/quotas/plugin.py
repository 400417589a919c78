"""The kernel's quota feature: its usage tables and the job that flushes usage counts, registered
through the plugin hooks."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.quotas.models import DailyUsage, UsageGauge
from inopsio.settings import Settings


@hookimpl
def register_models(register: Any) -> None:
    register(DailyUsage)
    register(UsageGauge)


async def flush_usage(ctx: dict[str, Any]) -> int:
    """Move the queued daily usage counts from Redis into PostgreSQL (any worker may do it)."""
    moved: int = await ctx["kernel"].quotas.flush()
    return moved


def flush_schedule(seconds: float) -> dict[str, Any]:
    """arq cron fields that fire about every ``seconds`` (at least once a second, at most hourly)."""
    step = max(1, round(seconds))
    if step < 60:
        return {"second": set(range(0, 60, step))}
    minutes = min(60, max(1, step // 60))
    return {"minute": set(range(0, 60, minutes)), "second": 0}


@hookimpl
def register_jobs(register: Any, settings: Settings) -> None:
    register(
        flush_usage,
        name="kernel.flush_usage",
        max_tries=1,
        timeout=120,
        cron=flush_schedule(settings.usage_flush_seconds),
    )
