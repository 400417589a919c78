"""The ERP plugin's jobs: a daily platform job that queues each tenant's daily run (overdue invoices,
reminders, recurring invoices)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from inopsio_erp import formatting
from inopsio_erp.invoices import services
from inopsio_erp.invoices.recurring import run_due_templates

log = logging.getLogger("inopsio_erp.jobs")
TENANT_DAILY = "erp.tenant_daily"


async def daily(ctx: dict[str, Any]) -> int:
    """Cron (platform): queue ``erp.tenant_daily`` for every active tenant with the ERP enabled, once a day."""
    kernel = ctx["kernel"]
    queued = 0
    after: str | None = None
    while True:
        tenants, _ = await kernel.tenants.list(status="active", after=after, limit=200)
        if not tenants:
            return queued
        for tenant in tenants:
            if tenant.module_enabled("erp"):
                day = formatting.today(tenant).isoformat()
                await kernel.jobs.enqueue(TENANT_DAILY, tenant_id=tenant.id, _job_id=f"erp.daily:{tenant.id}:{day}")
                queued += 1
        after = tenants[-1].slug


async def tenant_daily(ctx: dict[str, Any], *, day: str | None = None) -> dict[str, int]:
    """One tenant's day: mark overdue invoices, send due reminders, issue due recurring invoices.

    ``day`` (ISO date) stands in for today, for back-filling a missed day and for tests.
    """
    kernel, tenant = ctx["kernel"], ctx["tenant"]
    today = dt.date.fromisoformat(day) if day else formatting.today(tenant)
    async with ctx["db_session"]() as session:
        recurring = await run_due_templates(kernel, session, tenant, today)
        overdue = await services.mark_overdue(kernel, session, today)
        reminders = await services.send_reminders(kernel, session, tenant, today)
    result = {"overdue": len(overdue), "reminders": reminders, "recurring": len(recurring)}
    log.info("erp daily run for %s on %s: %s", tenant.slug, today, result)
    return result
