"""The CRM's background jobs: emptying the leads bin once the undo window has passed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select

from inopsio.db.base import utcnow
from inopsio.db.engine import switch_tenant
from inopsio.tenancy.models import Tenant
from inopsio_crm.leads.models import Lead
from inopsio_crm.leads.services import UNDO_DAYS


async def purge_deleted_leads(ctx: dict[str, Any], *, undo_days: float = UNDO_DAYS) -> int:
    """Delete, in every tenant, leads that have been in the bin longer than ``undo_days``.

    Merged leads stay: the survivor's timeline refers to them. One transaction, switching the tenant
    setting before each tenant's delete (row-level security); running it twice changes nothing more.
    """
    cutoff = utcnow() - dt.timedelta(days=undo_days)
    purged = 0
    async with ctx["kernel"].db.transaction(None) as connection:
        for tenant_id in list((await connection.execute(select(Tenant.id))).scalars()):
            await switch_tenant(connection, tenant_id)
            result = await connection.execute(
                delete(Lead).where(Lead.tenant_id == tenant_id, Lead.deleted_at < cutoff, Lead.merged_into_id.is_(None))
            )
            purged += result.rowcount or 0
    return purged
