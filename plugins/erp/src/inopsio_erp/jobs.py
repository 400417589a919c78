"""The ERP plugin's jobs: each tenant's daily run (overdue invoices, reminders, recurring invoices),
scheduled per tenant by the kernel for the tenants that have the ERP on."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from inopsio_erp import formatting
from inopsio_erp.invoices import services
from inopsio_erp.invoices.recurring import run_due_templates

log = logging.getLogger("inopsio_erp.jobs")


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
