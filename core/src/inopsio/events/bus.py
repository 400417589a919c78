"""Publishing events and delivering them: the transactional outbox and its dispatcher.

``await kernel.events.publish(session, "crm.deal.won", {...}, actor=...)`` writes the event in the
caller's transaction, so it exists exactly when the change does, and asks PostgreSQL to NOTIFY at
commit. Every process runs a dispatcher that wakes on that notification (or polls every second as
the safety net), claims pending events with ``FOR UPDATE SKIP LOCKED`` and a lease (a process that
dies mid-delivery leaves them to be claimed again), fans each event out to the tenant's real-time
channel on Redis, and runs the matching handlers of the plugins the tenant has enabled. A handler
runs in a tenant-scoped transaction that also records its delivery as done, so its database effects
happen once however often the event is delivered; a failing handler is retried with backoff and
parked after its last attempt, where an admin can see and replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import psycopg
from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert

from inopsio.db.base import new_id, utcnow
from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.events.schemas import DomainEvent, EventHandler, EventType

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.kernel import Kernel
    from inopsio.plugins import PluginRegistry

log = logging.getLogger("inopsio.events")
LEASE_SECONDS = 30
POLL_SECONDS = 1.0
BATCH = 200
MAX_BACKOFF_SECONDS = 3600.0


def notify_channel(namespace: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", namespace.lower()) + "_events"


def realtime_channel(namespace: str, tenant_id: UUID | str) -> str:
    """The Redis channel carrying one tenant's events to its WebSocket subscribers."""
    return f"{namespace}:events:{tenant_id}"


def backoff_seconds(attempts: int) -> float:
    """2 s, 4 s, 8 s, ... capped at an hour."""
    return float(min(2.0**attempts, MAX_BACKOFF_SECONDS))


def event_of(record: EventRecord) -> DomainEvent:
    return DomainEvent(
        id=record.id,
        type=record.type,
        tenant_id=record.tenant_id,
        actor=record.actor,
        occurred_at=record.occurred_at,
        data=dict(record.data),
    )


def add_to_outbox(
    session: AsyncSession, tenant_id: UUID, event_type: str, payload: dict[str, Any], actor: str | None
) -> DomainEvent:
    """Add an event and its pending marker to ``session`` (validated by the caller).

    Without a NOTIFY the dispatchers still find it on their next poll (within a second).
    """
    event = DomainEvent(
        id=new_id(), type=event_type, tenant_id=tenant_id, actor=actor, occurred_at=utcnow(), data=payload
    )
    session.add(
        EventRecord(
            id=event.id, tenant_id=tenant_id, type=event_type, actor=actor, occurred_at=event.occurred_at, data=payload
        )
    )
    session.add(PendingEvent(event_id=event.id, tenant_id=tenant_id, available_at=event.occurred_at))
    return event


#: An event, its pending marker and the dispatchers' wake-up call, in one statement (one round trip
#: instead of three; NOTIFY is delivered at commit, so a rolled-back change wakes nobody).
_PUBLISH = text(
    """
    WITH logged AS (
        INSERT INTO event_log (tenant_id, id, type, actor, occurred_at, data)
        VALUES (:tenant_id, :id, :type, :actor, :occurred_at, CAST(:data AS jsonb))
    ), pending AS (
        INSERT INTO event_pending (event_id, tenant_id, available_at, claims)
        VALUES (:id, :tenant_id, :occurred_at, 0)
    )
    SELECT pg_notify(:channel, :event)
    """
)

#: Locks the pending rows a claim still holds (a row re-claimed after its lease, or already finished,
#: is not returned), with their events (``type`` is NULL when the event is gone with its tenant).
_OWN_BATCH = text(
    """
    SELECT p.event_id, l.type, l.actor, l.occurred_at, l.data
    FROM event_pending p
    JOIN unnest(CAST(:ids AS uuid[]), CAST(:claims AS int[])) AS c(event_id, claims)
      ON p.event_id = c.event_id AND p.claims = c.claims
    LEFT JOIN event_log l ON l.id = p.event_id
    ORDER BY p.event_id
    FOR UPDATE OF p
    """
)
_DELIVERIES = text(
    "SELECT event_id, handler, status, attempts, next_attempt_at FROM event_deliveries WHERE event_id = ANY(:ids)"
)
#: Records a batch's handler outcomes in one statement of fixed shape (prepared once per connection).
_RECORD_DELIVERIES = text(
    """
    INSERT INTO event_deliveries
        (tenant_id, event_id, handler, status, attempts, last_error, next_attempt_at, updated_at)
    SELECT :tenant_id, d.event_id, d.handler, d.status, d.attempts, d.last_error, d.next_attempt_at, now()
    FROM unnest(
        CAST(:event_id AS uuid[]), CAST(:handler AS text[]), CAST(:status AS text[]), CAST(:attempts AS int[]),
        CAST(:last_error AS text[]), CAST(:next_attempt_at AS timestamptz[])
    ) AS d(event_id, handler, status, attempts, last_error, next_attempt_at)
    ON CONFLICT (tenant_id, event_id, handler) DO UPDATE SET
        status = excluded.status, attempts = excluded.attempts, last_error = excluded.last_error,
        next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at
    """
)


class UnknownEventType(ValueError):
    pass


class EventBus:
    """One process's publisher and dispatcher."""

    def __init__(
        self,
        db: Database,
        redis: Redis,
        registry: PluginRegistry,
        namespace: str,
        types: Iterable[EventType],
        handlers: Iterable[EventHandler],
    ) -> None:
        self.db = db
        self.redis = redis
        self.registry = registry
        self.namespace = namespace
        self.types: dict[str, EventType] = {t.name: t for t in types}
        self.handlers: list[EventHandler] = list(handlers)
        self.channel = notify_channel(namespace)
        self._wake = asyncio.Event()
        self.delivered = 0
        #: Seconds from an event's commit to its dispatch, last batch (for metrics).
        self.last_lag = 0.0

    # -- publishing ----------------------------------------------------------------------------------

    async def publish(
        self,
        session: AsyncSession,
        event_type: str,
        data: dict[str, Any] | msgspec.Struct,
        *,
        tenant_id: UUID | None = None,
        actor: str | None = None,
    ) -> DomainEvent:
        """Record an event in ``session``'s transaction (scoped to its tenant); delivered after commit."""
        declared = self.types.get(event_type)
        if declared is None:
            raise UnknownEventType(f"event type {event_type!r} is not declared by any loaded plugin")
        if isinstance(data, msgspec.Struct):
            payload: dict[str, Any] = msgspec.to_builtins(data)
        else:
            payload = data
            if declared.payload is not None:
                # Validate against the declared schema, store JSON-ready builtins.
                payload = msgspec.to_builtins(msgspec.convert(data, declared.payload, strict=False))
        tenant = tenant_id or session.info.get("tenant_id")
        if tenant is None:
            raise ValueError("publish needs a tenant: use a tenant-scoped session or pass tenant_id")
        event = DomainEvent(
            id=new_id(), type=event_type, tenant_id=tenant, actor=actor, occurred_at=utcnow(), data=payload
        )
        await session.execute(
            _PUBLISH,
            {
                "tenant_id": tenant,
                "id": event.id,
                "type": event_type,
                "actor": actor,
                "occurred_at": event.occurred_at,
                "data": msgspec.json.encode(payload).decode(),
                "channel": self.channel,
                "event": str(event.id),
            },
        )
        return event

    async def emit(
        self, tenant_id: UUID, event_type: str, data: dict[str, Any] | msgspec.Struct, *, actor: str | None = None
    ) -> DomainEvent:
        """Publish in a transaction of its own (when there is no change to commit it with)."""
        async with self.db.session(tenant_id) as session:
            return await self.publish(session, event_type, data, actor=actor)

    # -- dispatching ---------------------------------------------------------------------------------

    async def run(self, kernel: Kernel) -> None:
        """Dispatch until cancelled: woken by NOTIFY, polling as the safety net."""
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                try:
                    while await self.dispatch_once(kernel):
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("event dispatch failed; retrying", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                self._wake.clear()
        finally:
            listener.cancel()

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; reconnects when the database comes back."""
        url = self.db.app_url.replace("postgresql+psycopg://", "postgresql://")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {self.channel}")
                    self._wake.set()
                    async for _ in connection.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event notifications lost; polling until they return")
                await asyncio.sleep(POLL_SECONDS)

    async def claim(self, limit: int = BATCH) -> list[tuple[UUID, UUID, int]]:
        async with self.db.transaction(None) as connection:
            rows = await connection.execute(
                text(
                    """
                    UPDATE event_pending SET available_at = now() + make_interval(secs => :lease), claims = claims + 1
                    WHERE event_id IN (
                        SELECT event_id FROM event_pending WHERE available_at <= now()
                        ORDER BY available_at, event_id LIMIT :limit FOR UPDATE SKIP LOCKED
                    )
                    RETURNING event_id, tenant_id, claims
                    """
                ),
                {"lease": LEASE_SECONDS, "limit": limit},
            )
            return [(r.event_id, r.tenant_id, r.claims) for r in rows]

    async def dispatch_once(self, kernel: Kernel) -> int:
        """Claim and deliver one batch; returns how many events it handled."""
        claimed = await self.claim()
        by_tenant: dict[UUID, list[tuple[UUID, int]]] = defaultdict(list)
        for event_id, tenant_id, claims in claimed:
            by_tenant[tenant_id].append((event_id, claims))
        for tenant_id, items in by_tenant.items():
            # A tenant's events in the order they happened (ids are UUIDv7).
            items.sort()
            await self._deliver_tenant(kernel, tenant_id, items)
        return len(claimed)

    async def _deliver_tenant(self, kernel: Kernel, tenant_id: UUID, items: list[tuple[UUID, int]]) -> None:
        """Deliver one tenant's claimed events in a single tenant-scoped transaction.

        The transaction first locks the events' pending rows (still carrying this claim; a row a
        later claim took over after the lease, or another dispatcher finished, is skipped), loads
        the events and their deliveries, fans them all out to Redis in one pipeline (before any
        handler runs, so real time never waits for handlers), runs each matching handler in a
        savepoint of its own (a failing handler rolls back only its own effects), records every
        handler's delivery in one statement, and finishes the events in one or two statements. The
        handlers' effects, their delivery records and the events' completion commit together; a
        crash anywhere before the commit leaves the batch to be claimed again after the lease.
        """
        tenant = await kernel.tenants.directory.get_by_id(tenant_id)
        disabled = set(tenant.settings.disabled_modules) if tenant else set()
        async with self.db.session(tenant_id) as session:
            # Lock the pending rows this claim still holds (with their events, where they still exist).
            owned = (
                await session.execute(_OWN_BATCH, {"ids": [i for i, _ in items], "claims": [c for _, c in items]})
            ).all()
            if not owned:
                return
            ids = [row.event_id for row in owned]
            first_claims = {event_id for event_id, claims in items if claims == 1}
            events = {
                row.event_id: DomainEvent(
                    id=row.event_id,
                    type=row.type,
                    tenant_id=tenant_id,
                    actor=row.actor,
                    occurred_at=row.occurred_at,
                    data=row.data,
                )
                for row in owned
                if row.type is not None
            }
            matching = {
                event.id: [h for h in self.handlers if h.matches(event.type) and h.plugin not in disabled]
                for event in events.values()
            }
            state: dict[tuple[UUID, str], Any] = {}
            if any(matching.values()):
                rows = await session.execute(_DELIVERIES, {"ids": ids})
                state = {(d.event_id, d.handler): d for d in rows}
            now = time.time()
            fan_out = []
            for event_id in ids:
                event = events.get(event_id)
                if event is None:
                    continue
                self.last_lag = max(0.0, now - event.occurred_at.timestamp())
                if event_id in first_claims or not any(state.get((event_id, h.name)) for h in self.handlers):
                    fan_out.append(event)
            await self._fan_out(fan_out)

            done: list[UUID] = []
            retry: dict[UUID, dt.datetime] = {}
            outcomes: list[dict[str, Any]] = []
            for event_id in ids:
                event = events.get(event_id)
                if event is None:  # the tenant (and its events) is gone
                    done.append(event_id)
                    continue
                next_attempt: dt.datetime | None = None
                for handler in matching[event_id]:
                    delivery = state.get((event_id, handler.name))
                    if delivery is not None and delivery.status in ("done", "parked"):
                        continue
                    if delivery is not None and delivery.next_attempt_at and delivery.next_attempt_at > utcnow():
                        next_attempt = min(filter(None, (next_attempt, delivery.next_attempt_at)))
                        continue
                    outcome = await self._run_handler(kernel, session, handler, event, delivery)
                    outcomes.append(outcome)
                    if outcome["next_attempt_at"] is not None:
                        next_attempt = min(filter(None, (next_attempt, outcome["next_attempt_at"])))
                if next_attempt is None:
                    done.append(event_id)
                else:
                    retry[event_id] = next_attempt
            if outcomes:
                columns = ("event_id", "handler", "status", "attempts", "last_error", "next_attempt_at")
                params: dict[str, Any] = {c: [o[c] for o in outcomes] for c in columns}
                await session.execute(_RECORD_DELIVERIES, {"tenant_id": tenant_id, **params})
            await self._finish(session, done, retry)
        self.delivered += len(ids)

    async def _fan_out(self, events: list[DomainEvent]) -> None:
        """Publish events on their tenants' real-time channels, in one round trip to Redis."""
        if not events:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.publish(realtime_channel(self.namespace, event.tenant_id), msgspec.json.encode(event))
                await pipe.execute()
        except Exception:
            log.warning("real-time fan-out of %s events failed (Redis unavailable?)", len(events))

    async def _run_handler(
        self,
        kernel: Kernel,
        session: AsyncSession,
        handler: EventHandler,
        event: DomainEvent,
        delivery: Any,
    ) -> dict[str, Any]:
        """Run one handler in a savepoint of ``session``; returns its delivery record's values.

        The savepoint is only sent when the handler touches the database, so a handler with
        nothing to do costs no round trip.
        """
        attempts = (delivery.attempts if delivery else 0) + 1
        values: dict[str, Any] = {
            "event_id": event.id,
            "handler": handler.name,
            "status": "done",
            "attempts": attempts,
            "last_error": None,
            "next_attempt_at": None,
        }
        try:
            async with session.begin_nested():
                await handler.function(event, {"kernel": kernel, "session": session, "tenant_id": event.tenant_id})
                await session.flush()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            parked = attempts >= handler.max_attempts
            retry_at = None if parked else utcnow() + dt.timedelta(seconds=backoff_seconds(attempts))
            log.warning(
                "handler %s failed on %s (attempt %s)%s: %s",
                handler.name,
                event.id,
                attempts,
                "; parked" if parked else "",
                error,
            )
            values.update(status="parked" if parked else "retrying", last_error=error, next_attempt_at=retry_at)
        return values

    @staticmethod
    async def _finish(session: AsyncSession, done: list[UUID], retry: dict[UUID, dt.datetime]) -> None:
        """Remove delivered events from the outbox; make the others due again at their next retry."""
        if done:
            await session.execute(text("DELETE FROM event_pending WHERE event_id = ANY(:ids)"), {"ids": done})
        if retry:
            await session.execute(
                text(
                    """
                    UPDATE event_pending p SET available_at = r.at
                    FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS r(event_id, at)
                    WHERE p.event_id = r.event_id
                    """
                ),
                {"ids": list(retry), "ats": list(retry.values())},
            )

    async def replay(self, tenant_id: UUID, event_id: UUID, handler: str) -> bool:
        """Give a parked delivery a fresh set of attempts, now."""
        async with self.db.session(tenant_id) as session:
            result = await session.execute(
                update(Delivery)
                .where(Delivery.event_id == event_id, Delivery.handler == handler, Delivery.status == "parked")
                .values(status="retrying", attempts=0, next_attempt_at=None, updated_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            stmt = insert(PendingEvent).values(event_id=event_id, tenant_id=tenant_id, available_at=utcnow())
            await session.execute(
                stmt.on_conflict_do_update(index_elements=["event_id"], set_={"available_at": utcnow()})
            )
            await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": self.channel, "p": str(event_id)})
        return True
