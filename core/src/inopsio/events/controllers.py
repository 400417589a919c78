"""``/api/v1/events``: the event catalog, the tenant's activity feed, and parked deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from sqlalchemy import select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.events.models import Delivery, EventRecord
from inopsio.events.schemas import CatalogEntry, DeliveryOut, EventOut, EventPage
from inopsio.events.visibility import PrincipalReader
from inopsio.identity.principal import principal_of

#: Rows a feed request fetches at least per round trip, and at most in all, when looking for a full page.
FEED_BATCH = 100
FEED_SCAN_LIMIT = 5000


class EventsController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get("/catalog")
    async def catalog(self, kernel: KernelDep) -> list[CatalogEntry]:
        """Every event type the loaded plugins declare: the JSON Schema of its data and who may read it."""
        return [
            CatalogEntry(
                type=t.name,
                module=t.name.split(".", 1)[0],
                description=t.description,
                permission=t.permission,
                row_level=t.visible is not None,
                schema=t.json_schema(),
            )
            for t in sorted(kernel.events.types.values(), key=lambda t: t.name)
        ]

    @get("/", opt={"permission": "kernel.events.read"})
    async def feed(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        type: Annotated[
            str | None, QueryParameter(max_length=150, description="Exact type, or a prefix ending in .*")
        ] = None,
        since: FromQuery[dt.datetime | None] = None,
        after: Annotated[UUID | None, QueryParameter(description="next_after of the previous page")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> EventPage:
        """The tenant's events the caller may read, oldest first (activity feed; catching up after a reconnect).

        Each event type's permission, and its row-level rule (private leads, other members'
        notifications), decide what a caller sees; see ``docs/events.md``.
        """
        principal = principal_of(request.scope)
        if principal is None:  # the access guard admitted the request; this keeps the types honest
            raise Problem(401, "authentication-required", "Sign in, or send an access token or API key.")
        reader = PrincipalReader(kernel.identity.authorizer, principal, tenant.id)
        events = kernel.events
        # Types the caller may not read at all stay in the database; row-level rules are applied below.
        query = (
            select(EventRecord).where(EventRecord.type.in_(events.types_readable_by(reader))).order_by(EventRecord.id)
        )
        if type:
            query = query.where(
                EventRecord.type.startswith(type[:-1]) if type.endswith(".*") else EventRecord.type == type
            )
        if since is not None:
            query = query.where(EventRecord.occurred_at >= since)
        items: list[EventOut] = []
        cursor, scanned, exhausted = after, 0, False
        async with kernel.db.session(tenant.id) as session:
            # A page may take several batches when a row-level rule hides many events; the scan is
            # bounded, and then the page ends early with next_after at the last event looked at.
            while len(items) < limit and scanned < FEED_SCAN_LIMIT:
                batch = max(limit - len(items), FEED_BATCH)
                page_query = query.limit(batch) if cursor is None else query.where(EventRecord.id > cursor).limit(batch)
                rows = (await session.execute(page_query)).scalars().all()
                for row in rows:
                    scanned += 1
                    cursor = row.id
                    if events.readable_by(reader, row.type, row.data):
                        items.append(
                            EventOut(
                                id=row.id, type=row.type, actor=row.actor, occurred_at=row.occurred_at, data=row.data
                            )
                        )
                        if len(items) == limit:
                            break
                if len(rows) < batch:
                    # The log ends in this batch: read to its end, unless the page filled up before its last row.
                    exhausted = not rows or cursor == rows[-1].id
                    break
        return EventPage(items=items, next_after=None if exhausted else cursor)

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
