"""``/api/v1/events``: the event catalog, the tenant's activity feed, and parked deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from sqlalchemy import select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.events.models import Delivery, EventRecord
from inopsio.events.schemas import CatalogEntry, DeliveryOut, EventOut, EventPage


class EventsController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get("/catalog")
    async def catalog(self, kernel: KernelDep) -> list[CatalogEntry]:
        """Every event type the loaded plugins declare, with the JSON Schema of its data."""
        return [
            CatalogEntry(type=t.name, module=t.name.split(".", 1)[0], description=t.description, schema=t.json_schema())
            for t in sorted(kernel.events.types.values(), key=lambda t: t.name)
        ]

    @get("/", opt={"permission": "kernel.events.read"})
    async def feed(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        type: Annotated[
            str | None, QueryParameter(max_length=150, description="Exact type, or a prefix ending in .*")
        ] = None,
        since: FromQuery[dt.datetime | None] = None,
        after: Annotated[UUID | None, QueryParameter(description="Last event id of the previous page")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> EventPage:
        """The tenant's events, oldest first (activity feed; catching up after a reconnect)."""
        query = select(EventRecord).order_by(EventRecord.id).limit(limit)
        if type:
            query = query.where(
                EventRecord.type.startswith(type[:-1]) if type.endswith(".*") else EventRecord.type == type
            )
        if since is not None:
            query = query.where(EventRecord.occurred_at >= since)
        if after is not None:
            query = query.where(EventRecord.id > after)
        async with kernel.db.session(tenant.id) as session:
            rows = (await session.execute(query)).scalars().all()
        items = [EventOut(id=r.id, type=r.type, actor=r.actor, occurred_at=r.occurred_at, data=r.data) for r in rows]
        return EventPage(items=items, next_after=items[-1].id if len(items) == limit else None)

    @get("/deliveries", opt={"permission": "kernel.events.admin"})
    async def deliveries(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        status: Annotated[str, QueryParameter(pattern="^(parked|retrying|done)$")] = "parked",
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[DeliveryOut]:
        """Deliveries by status: ``parked`` ones gave up and wait for an admin's replay."""
        async with kernel.db.session(tenant.id) as session:
            rows = (
                await session.execute(
                    select(Delivery, EventRecord.type)
                    .join(
                        EventRecord,
                        (EventRecord.tenant_id == Delivery.tenant_id) & (EventRecord.id == Delivery.event_id),
                    )
                    .where(Delivery.status == status)
                    .order_by(Delivery.updated_at.desc())
                    .limit(limit)
                )
            ).all()
        return [
            DeliveryOut(
                event_id=d.event_id,
                event_type=t,
                handler=d.handler,
                status=d.status,
                attempts=d.attempts,
                last_error=d.last_error,
                next_attempt_at=d.next_attempt_at,
                updated_at=d.updated_at,
            )
            for d, t in rows
        ]

    @post(
        "/deliveries/{event_id:uuid}/{handler:str}/replay", status_code=202, opt={"permission": "kernel.events.admin"}
    )
    async def replay(
        self, kernel: KernelDep, tenant: CurrentTenant, event_id: FromPath[UUID], handler: FromPath[str]
    ) -> dict[str, str]:
        """Try a parked delivery again, with a fresh set of attempts."""
        if not await kernel.events.replay(tenant.id, event_id, handler):
            raise Problem(404, "not-found", "No parked delivery of this event to this handler.")
        return {"status": "queued"}
