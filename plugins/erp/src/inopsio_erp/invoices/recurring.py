"""Recurring invoice templates: which are due, and the invoices they issue (and email) when run."""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.errors import Problem
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp.invoices import services
from inopsio_erp.invoices.schemas import InvoiceIn
from inopsio_erp.models import Invoice, RecurringTemplate

log = logging.getLogger("inopsio_erp.recurring")
MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}
#: A template that missed many runs (the worker was down) catches up at most this many per day.
MAX_CATCH_UP = 12


def add_months(start: dt.date, months: int) -> dt.date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def next_run_after(start_on: dt.date, interval: str, runs: int) -> dt.date:
    """Run number ``runs`` (0-based) of a template: from the start date, so the 31st stays the month's end."""
    return add_months(start_on, MONTHS[interval] * runs)


async def run_due_templates(kernel: Any, session: AsyncSession, tenant: TenantInfo, today: dt.date) -> list[Invoice]:
    """Issue an invoice for every run of every active template due by ``today``.

    Each run's draft carries ``external_ref = recurring:<template>:<date>`` (unique per tenant), so a
    job that runs twice issues each run once.
    """
    query = (
        select(RecurringTemplate)
        .where(RecurringTemplate.active.is_(True), RecurringTemplate.next_run <= today)
        .with_for_update(skip_locked=True)
    )
    issued: list[Invoice] = []
    for template in list((await session.execute(query)).scalars()):
        try:
            async with session.begin_nested():
                issued += await _run_template(kernel, session, tenant, template, today)
        except (msgspec.ValidationError, Problem) as exc:
            # One broken template (a customer deleted since, a body that no longer validates) must not
            # stop the others or the tenant's day; it stays due and is logged every day until fixed.
            detail = exc.detail if isinstance(exc, Problem) else str(exc)
            log.error("recurring invoice %s of %s cannot run: %s", template.id, tenant.slug, detail)
    await session.flush()
    return issued


async def _run_template(
    kernel: Any, session: AsyncSession, tenant: TenantInfo, template: RecurringTemplate, today: dt.date
) -> list[Invoice]:
    issued: list[Invoice] = []
    for _ in range(MAX_CATCH_UP):
        if template.next_run > today:
            break
        ref = f"recurring:{template.id}:{template.next_run.isoformat()}"
        exists = await session.scalar(select(Invoice.id).where(Invoice.external_ref == ref))
        if exists is None:
            body = msgspec.convert(template.body, InvoiceIn)
            draft = await services.create_draft(session, body, external_ref=ref)
            draft.recurring_template_id = template.id
            invoice = await services.issue(kernel, session, tenant, draft.id, actor="erp:recurring")
            if template.send_email and invoice.customer_snapshot.get("email"):
                await services.send(kernel, session, tenant, invoice.id, actor="erp:recurring")
            issued.append(invoice)
        template.runs += 1
        template.next_run = next_run_after(template.start_on, template.interval, template.runs)
    await session.flush()
    return issued
