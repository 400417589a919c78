"""One WebSocket client: its protocol, topics, catch-up from the event log, and bounded queue.

Client to server (JSON text frames)::

    {"op": "subscribe", "topics": ["sample.note.*"], "since": "<last event id seen>"}
    {"op": "unsubscribe", "topics": ["sample.note.*"]}
    {"op": "ping"}

Server to client::

    {"op": "subscribed", "topics": [...every topic now followed...]}
    {"op": "event", "topic": "<the subscribed topic that matched>", "event": {id, type, tenant_id, ...}}
    {"op": "gap", "after": "<event id>", "detail": "..."}   catch-up stopped at its cap: page the rest
                                                             through GET /api/v1/events?after=<id>
    {"op": "unsubscribed", "topics": [...]}
    {"op": "pong"}
    {"op": "error", "code": "...", "detail": "...", "topic": "..."?}

A socket gets only the events its principal may read: each event type's permission and row-level
rule (:mod:`inopsio.events.visibility`), checked live and in the catch-up alike, so a member
subscribed to ``*`` sees neither audit entries nor another member's private leads.

A ``subscribe`` with ``since`` first sends the matching events after that id from the tenant's
event log (in id order, at most :data:`CATCH_UP_LIMIT`), then live ones. The handover has neither
gaps nor duplicates: the topics are live (events queue up) before the log is read, the queue is
held back until the log's events are sent, and queued events already sent from the log are
skipped. Delivery is at least once in rare cases (an event put on the channel again after its
marker expired, see :data:`inopsio.events.bus.PUBLISH_ONCE_SCRIPT`): clients should ignore an
event id they have seen.

Close codes: 4408 the client fell too far behind (its queue overflowed; reconnect with ``since``),
4403 the user lost access to the tenant or the tenant was suspended, 1011 the server could not
subscribe to Redis. A refused handshake is accepted and closed with ``4000 + status`` (4400, 4401,
4403, 4404, 4429: :func:`inopsio.tenancy.resolution.refuse_websocket`; table in ``docs/events.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from sqlalchemy import or_, select

from inopsio.db.base import new_id
from inopsio.events.models import EventRecord
from inopsio.events.visibility import PrincipalReader
from inopsio.realtime.hub import EventHeader, SharedEvent
from inopsio.realtime.topics import TopicPolicy, topic_matches

if TYPE_CHECKING:
    from inopsio.identity.principal import Principal
    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.realtime")

QUEUE_SIZE = 1000
CATCH_UP_LIMIT = 1000
MAX_TOPICS = 50
#: Ids of events recently sent, to skip their live copy after a catch-up (the newest matter most).
SENT_MEMORY = 512
CLOSE_TOO_SLOW = 4408
CLOSE_FORBIDDEN = 4403
CLOSE_UNAVAILABLE = 1011


class Subscribe(msgspec.Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True):
    topics: list[Any]
    since: UUID | None = None


class Unsubscribe(msgspec.Struct, tag_field="op", tag="unsubscribe", forbid_unknown_fields=True):
    topics: list[Any]


class Ping(msgspec.Struct, tag_field="op", tag="ping"):
    pass


ClientMessage = Subscribe | Unsubscribe | Ping
_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


class RealtimeConnection:
    """Serves one accepted socket until it closes; see the module doc for the protocol."""

    def __init__(
        self, socket: WebSocket[Any, Any, Any], kernel: Kernel, tenant: TenantInfo, principal: Principal
    ) -> None:
        self.socket = socket
        self.kernel = kernel
        self.tenant = tenant
        self.tenant_id = tenant.id
        self.principal = principal
        #: Decides which events this socket may receive (answers come from the RBAC cache).
        self.reader = PrincipalReader(kernel.identity.authorizer, principal, tenant.id)
        self.policy: TopicPolicy = kernel.realtime.policy
        self.topics: list[str] = []
        self.queue: asyncio.Queue[tuple[UUID, str]] = asyncio.Queue(QUEUE_SIZE)
        self.send_lock = asyncio.Lock()
        self._sent: dict[UUID, None] = {}
        #: The newest event id sent (or the moment of the first subscription): where a resync starts.
        self.cursor: UUID | None = None
        self._closing: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- fed by the hub (must never block) ---------------------------------------------------------

    def offer(self, header: EventHeader, event: SharedEvent) -> None:
        topic = next((t for t in self.topics if topic_matches(t, header.type)), None)
        if topic is None or self._closing is not None:
            return
        if not self.kernel.events.readable_by(self.reader, header.type, event.data):
            return
        frames = event.frames
        frame = frames.get(topic)
        if frame is None:
            frame_bytes = b'{"op":"event","topic":' + _encoder.encode(topic) + b',"event":' + event.raw + b"}"
            frames[topic] = frame = frame_bytes.decode()
        try:
            self.queue.put_nowait((header.id, frame))
        except asyncio.QueueFull:
            self.kernel.realtime.overflowed += 1
            self.close_soon(CLOSE_TOO_SLOW, "too slow: events backed up; reconnect with since")

    def resync(self) -> None:
        if self.topics and self.cursor is not None and self._closing is None:
            self._spawn(self._catch_up(self.cursor, list(self.topics)))

    def recheck(self, tenant: TenantInfo | None) -> None:
        """Permissions and the tenant may change while a socket stays open (the hub calls this now and then)."""
        if self._closing is not None:
            return
        user_id = self.principal.user_id
        if tenant is None or not tenant.is_active:
            self.close_soon(CLOSE_FORBIDDEN, "the tenant is no longer available")
            return
        if self.principal.kind == "user" and (
            user_id is None or self.kernel.identity.authorizer.role_of(user_id, self.tenant_id) is None
        ):
            self.close_soon(CLOSE_FORBIDDEN, "no longer a member of this tenant")
            return
        self.tenant = tenant
        for topic in list(self.topics):
            refusal = self.policy.check(topic, self.principal, tenant)
            if refusal is not None:
                self.topics = [t for t in self.topics if t != topic]
                self._spawn(self._error(refusal.code, f"No longer followed: {refusal.detail}", topic=topic))

    # -- serving -----------------------------------------------------------------------------------

    async def serve(self) -> None:
        tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._write()),
            asyncio.create_task(self._closed.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, *self._tasks]:
                task.cancel()
            for task in [*tasks, *self._tasks]:
                with contextlib.suppress(BaseException):
                    await task
            for task in tasks[:2]:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.warning("real-time connection failed", exc_info=task.exception())
            if self._closing is not None:
                code, reason = self._closing
                with contextlib.suppress(Exception):
                    await self.socket.close(code=code, reason=reason)

    def close_soon(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._closed.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.socket.send_data(_encoder.encode(message).decode(), mode="text")

    async def _error(self, code: str, detail: str, **extra: Any) -> None:
        async with self.send_lock:
            await self._send({"op": "error", "code": code, "detail": detail, **extra})

    async def _read(self) -> None:
        while True:
            try:
                data = await self.socket.receive_data(mode="text")
            except WebSocketDisconnect:
                return
            try:
                message = _decoder.decode(data)
            except msgspec.ValidationError as exc:
                await self._error("bad-message", f"Not a message of this protocol: {exc}")
                continue
            except msgspec.DecodeError:
                await self._error("bad-message", "Messages are JSON objects with an 'op' member.")
                continue
            if isinstance(message, Ping):
                async with self.send_lock:
                    await self._send({"op": "pong"})
            elif isinstance(message, Subscribe):
                await self._subscribe(message)
            else:
                removed = [t for t in message.topics if t in self.topics]
                self.topics = [t for t in self.topics if t not in removed]
                async with self.send_lock:
                    await self._send({"op": "unsubscribed", "topics": removed, "following": self.topics})

    async def _subscribe(self, message: Subscribe) -> None:
        accepted: list[str] = []
        for topic in message.topics:
            refusal = self.policy.check(topic, self.principal, self.tenant)
            if refusal is not None:
                await self._error(refusal.code, refusal.detail, topic=refusal.topic)
                continue
            assert isinstance(topic, str)
            if topic not in accepted:
                accepted.append(topic)
        new = [t for t in accepted if t not in self.topics]
        if len(self.topics) + len(new) > MAX_TOPICS:
            await self._error("too-many-topics", f"A connection follows at most {MAX_TOPICS} topics.")
            return
        if self.cursor is None:
            # Events generated before now are the log's: a resync after a Redis outage starts here.
            self.cursor = new_id()
        # Live from here on: matching events queue up while the log is read below.
        self.topics.extend(new)
        async with self.send_lock:
            await self._send({"op": "subscribed", "topics": accepted, "following": self.topics})
        if message.since is not None and accepted:
            await self._catch_up(message.since, accepted)

    async def _catch_up(self, since: UUID, topics: list[str]) -> None:
        """Send the logged events after ``since`` matching ``topics`` that the principal may read,
        holding live ones back meanwhile."""
        events = self.kernel.events
        query = (
            select(EventRecord)
            # Types the principal may not read at all are left in the database.
            .where(EventRecord.id > since, EventRecord.type.in_(events.types_readable_by(self.reader)))
            .order_by(EventRecord.id)
            .limit(CATCH_UP_LIMIT + 1)
        )
        if "*" not in topics:
            conditions = [
                EventRecord.type.startswith(t[:-1], autoescape=True) if t.endswith(".*") else EventRecord.type == t
                for t in topics
            ]
            query = query.where(or_(*conditions))
        async with self.send_lock:
            # Tenant-scoped session: row-level security limits the read to this connection's tenant.
            async with self.kernel.db.session(self.tenant_id) as session:
                records = (await session.execute(query)).scalars().all()
            for record in records[:CATCH_UP_LIMIT]:
                if record.id in self._sent:
                    continue
                topic = next(t for t in topics if topic_matches(t, record.type))
                if not events.readable_by(self.reader, record.type, record.data):
                    continue
                event = {
                    "id": record.id,
                    "type": record.type,
                    "tenant_id": record.tenant_id,
                    "actor": record.actor,
                    "occurred_at": record.occurred_at,
                    "data": record.data,
                }
                await self._send({"op": "event", "topic": topic, "event": event})
                self._remember(record.id)
            if len(records) > CATCH_UP_LIMIT:
                last = records[CATCH_UP_LIMIT - 1].id
                await self._send(
                    {
                        "op": "gap",
                        "after": last,
                        "detail": f"More than {CATCH_UP_LIMIT} events were missed; page through "
                        f"GET /api/v1/events?after={last} for the rest. Live events follow.",
                    }
                )

    def _remember(self, event_id: UUID) -> None:
        self._sent[event_id] = None
        if len(self._sent) > SENT_MEMORY:
            del self._sent[next(iter(self._sent))]
        if self.cursor is None or event_id > self.cursor:
            self.cursor = event_id

    async def _write(self) -> None:
        while True:
            event_id, frame = await self.queue.get()
            async with self.send_lock:
                if event_id in self._sent:
                    continue
                await self.socket.send_data(frame, mode="text")
                self._remember(event_id)
                self.kernel.realtime.delivered += 1
