"""Publishing events and delivering them: the transactional outbox and its dispatcher.

``await kernel.events.publish(session, "crm.deal.won", {...}, actor=...)`` writes the event in the
caller's transaction, so it exists exactly when the change does, and asks PostgreSQL to NOTIFY at
commit. Right after that commit the publishing process also puts the event on the tenant's
real-time channel on Redis itself (the fast path: WebSocket clients need not wait for a dispatcher).
Every process runs a dispatcher that wakes on the notification (or polls every second as the safety
net), claims pending events with ``FOR UPDATE SKIP LOCKED`` and a lease (a process that dies
mid-delivery leaves them to be claimed again), fans each event out to the real-time channel unless
the fast path already did (a process may die between its commit and its fast path, or Redis may
have failed it), and runs the matching handlers of the plugins the tenant has enabled. A handler
runs in a tenant-scoped transaction that also records its delivery as done, so its database effects
happen once however often the event is delivered; a failing handler is retried with backoff and
parked after its last attempt, where an admin can see and replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import psycopg
from redis.exceptions import NoScriptError
from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from inopsio.db.base import new_id, utcnow
from inopsio.db.engine import after_commit
from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.events.schemas import DomainEvent, EventHandler, EventReader, EventType
from inopsio.events.visibility import EventData, readable

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
#: How long Redis remembers that an event was put on its real-time channel (so it is put there once):
#: ten claim leases, far longer than any dispatcher takes while it keeps up.
PUBLISHED_MARKER_SECONDS = 10 * LEASE_SECONDS
#: After a fast-path publication failed (Redis away), leave the channel to the dispatchers this long.
FAST_PATH_PAUSE_SECONDS = 5.0
#: Fast-path publications in flight beyond this are left to the dispatchers (Redis is not keeping up).
FAST_PATH_MAX_IN_FLIGHT = 1000
#: Puts an event on its tenant's real-time channel unless it is already marked as put there: the
#: publishing process (right after its commit) and the dispatchers both call it, and only the first
#: call publishes. Atomic in Redis, so two callers can never both publish.
#: KEYS[1]: the event's marker; ARGV: the channel, the message, the marker's lifetime in seconds.
PUBLISH_ONCE_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return -1
"""
_PUBLISH_ONCE_SHA = hashlib.sha1(PUBLISH_ONCE_SCRIPT.encode()).hexdigest()  # noqa: S324  (Redis names scripts so)
_SESSION_EVENTS = "inopsio.events.committed"


def notify_channel(namespace: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", namespace.lower()) + "_events"


def realtime_channel(namespace: str, tenant_id: UUID | str) -> str:
    """The Redis channel carrying one tenant's events to its WebSocket subscribers."""
    return f"{namespace}:events:{tenant_id}"


def published_marker(namespace: str, event_id: UUID) -> str:
    """The Redis key saying an event was put on its real-time channel (see :data:`PUBLISH_ONCE_SCRIPT`)."""
    return f"{namespace}:events:published:{event_id}"


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


#: Writes an event and its pending marker and asks for a NOTIFY at commit: one round trip.
_PUBLISH = text(
    """
    WITH logged AS (
        INSERT INTO event_log (tenant_id, id, type, actor, occurred_at, data)
        VALUES (:tenant_id, :id, :type, :actor, :occurred_at, :data)
    ), pending AS (
        INSERT INTO event_pending (event_id, tenant_id, available_at, claims) VALUES (:id, :tenant_id, :occurred_at, 0)
    )
    SELECT pg_notify(:channel, :notify)
    """
).bindparams(bindparam("data", type_=JSONB))
#: Leases the due events no other dispatcher holds (kernel table: no tenant scope needed).
_CLAIM = text(
    """
    UPDATE event_pending SET available_at = now() + make_interval(secs => :lease), claims = claims + 1
    WHERE event_id IN (
        SELECT event_id FROM event_pending WHERE available_at <= now()
        ORDER BY available_at, event_id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING event_id, tenant_id, claims
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
#: Settles a tenant's batch in one statement of fixed shape (prepared once per connection): records
#: the handlers' outcomes, removes the delivered events from the outbox and makes the others due
#: again at their next retry. Empty arrays make a part do nothing.
_SETTLE = text(
    """
    WITH recorded AS (
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
    ), finished AS (
        DELETE FROM event_pending WHERE event_id = ANY(CAST(:done AS uuid[]))
    ), retried AS (
        UPDATE event_pending p SET available_at = r.at
        FROM unnest(CAST(:retry_ids AS uuid[]), CAST(:retry_ats AS timestamptz[])) AS r(event_id, at)
        WHERE p.event_id = r.event_id
    )
    SELECT 1
    """
)
_OUTCOME_COLUMNS = ("event_id", "handler", "status", "attempts", "last_error", "next_attempt_at")


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
        self._announcing: set[asyncio.Task[None]] = set()
        self._fast_path_paused_until = 0.0
        self.delivered = 0
        #: Events this process put on their real-time channel right after committing them.
        self.announced = 0
        #: Seconds from an event's commit to its dispatch, last batch (for metrics).
        self.last_lag = 0.0

    # -- who may read what ----------------------------------------------------------------------------

    def readable_by(self, reader: EventReader, event_type: str, data: EventData | Callable[[], EventData]) -> bool:
        """Whether ``reader`` may read an event of ``event_type`` with ``data``: the declared permission,
        then the type's row-level rule (see :mod:`inopsio.events.visibility`). The feed, the WebSocket,
        webhooks and workflow triggers all decide with this."""
        return readable(self.types.get(event_type), reader, data)

    def types_readable_by(self, reader: EventReader) -> list[str]:
        """The declared types whose permission ``reader`` holds (their row-level rules still apply):
        lets a query of the event log skip the others in SQL."""
        return sorted(name for name, declared in self.types.items() if reader.allowed(declared.permission))

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
                "id": event.id,
                "tenant_id": tenant,
                "type": event_type,
                "actor": actor,
                "occurred_at": event.occurred_at,
                "data": payload,
                "channel": self.channel,
                "notify": str(event.id),
            },
        )
        if not session.in_nested_transaction():
            # A savepoint may still roll back while its transaction commits: events published inside
            # one take the dispatcher's path, which only ever sees what was committed.
            self._announce_after_commit(session, event)
        return event

    async def emit(
        self, tenant_id: UUID, event_type: str, data: dict[str, Any] | msgspec.Struct, *, actor: str | None = None
    ) -> DomainEvent:
        """Publish in a transaction of its own (when there is no change to commit it with)."""
        async with self.db.session(tenant_id) as session:
            return await self.publish(session, event_type, data, actor=actor)

    # -- the fast path to real time ------------------------------------------------------------------

    def _announce_after_commit(self, session: AsyncSession, event: DomainEvent) -> None:
        events: list[DomainEvent] | None = session.info.get(_SESSION_EVENTS)
        if events is None:
            events = session.info[_SESSION_EVENTS] = []
            after_commit(session, lambda: self._announce_committed(events))
        events.append(event)

    def _announce_committed(self, events: list[DomainEvent]) -> None:
        """Put just-committed events on their real-time channels, in a task (the committer never waits)."""
        if time.monotonic() < self._fast_path_paused_until or len(self._announcing) >= FAST_PATH_MAX_IN_FLIGHT:
            return  # the dispatchers publish them
        task = asyncio.get_running_loop().create_task(self._announce(events))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _announce(self, events: list[DomainEvent]) -> None:
        try:
            await self._publish_once(events)
        except Exception as exc:
            if time.monotonic() >= self._fast_path_paused_until:
                log.warning(
                    "real-time fast path failed (%s: %s); leaving it to the dispatchers for %s s",
                    type(exc).__name__,
                    exc,
                    FAST_PATH_PAUSE_SECONDS,
                )
            self._fast_path_paused_until = time.monotonic() + FAST_PATH_PAUSE_SECONDS
            return
        self.announced += len(events)

    async def settle(self) -> None:
        """Wait for the fast-path publications in flight (at shutdown; the dispatchers cover any lost)."""
        if self._announcing:
            await asyncio.wait(list(self._announcing), timeout=FAST_PATH_PAUSE_SECONDS)

    async def _publish_once(self, events: list[DomainEvent]) -> None:
        """Put each event on its tenant's real-time channel unless it is already there, in one round trip."""
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for event in events:
                        pipe.evalsha(
                            _PUBLISH_ONCE_SHA,
                            1,
                            published_marker(self.namespace, event.id),
                            realtime_channel(self.namespace, event.tenant_id),
                            msgspec.json.encode(event).decode(),
                            str(PUBLISHED_MARKER_SECONDS),
                        )
                    await pipe.execute()
                return
            except NoScriptError:
                # Redis restarted (or flushed its scripts): load it again. Publishing once is idempotent,
                # so calls of the batch that did run before the error are harmless to repeat.
                if attempt == 2:
                    raise
                await self.redis.script_load(PUBLISH_ONCE_SCRIPT)

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
        """Lease up to ``limit`` due events: one statement, its own transaction (one round trip)."""
        # The engine's connections are in autocommit mode: a lone statement commits by itself, so
        # no BEGIN and COMMIT are needed around it.
        async with self.db.engine.connect() as connection:
            rows = await connection.execute(_CLAIM, {"lease": LEASE_SECONDS, "limit": limit})
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
        the events and their deliveries, puts on the real-time channels in one Redis pipeline those
        the fast path has not (before any handler runs, so real time never waits for handlers), runs
        each matching handler in a savepoint of its own (a failing handler rolls back only its own
        effects), then records every handler's delivery and finishes the events in one statement.
        The handlers' effects, their delivery records and the events' completion commit together; a
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
            params: dict[str, Any] = {c: [o[c] for o in outcomes] for c in _OUTCOME_COLUMNS}
            await session.execute(
                _SETTLE,
                {
                    "tenant_id": tenant_id,
                    **params,
                    "done": done,
                    "retry_ids": list(retry),
                    "retry_ats": list(retry.values()),
                },
            )
        self.delivered += len(ids)

    async def _fan_out(self, events: list[DomainEvent]) -> None:
        """Publish events on their tenants' real-time channels (those the fast path has not), in one round trip."""
        if not events:
            return
        try:
            await self._publish_once(events)
        except Exception:
            # The hubs resynchronise their sockets from the event log when Redis returns.
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
