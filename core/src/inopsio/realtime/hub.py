"""One process's fan-out of tenants' events from Redis to its WebSocket connections.

The event bus puts every committed event once on its tenant's Redis channel
(:func:`inopsio.events.bus.realtime_channel`): the publishing process right after its commit, or a
dispatcher when that did not happen. A hub holds a single Redis pub/sub connection per
process and subscribes to a tenant's channel while at least one socket of that tenant is open here,
so a thousand sockets of one tenant cost one subscription, and every web process receives every
event of the tenants it serves. The channel name is built from the connection's authenticated
tenant, never from anything a client sends.

Why redis.asyncio directly rather than Litestar's channels plugin: the bus already publishes on
plain ``{namespace}:events:{tenant}`` channels (Litestar's Redis backend prefixes and upper-cases
names); the catch-up handover needs to know when Redis has *confirmed* a subscription; and a
socket that cannot keep up must be closed (so it reconnects with ``since`` and misses nothing),
where Litestar's backlog strategies drop messages silently.

A message's header is decoded once per process, its frame built once per topic, matched against each
of its tenant's sockets' topics (sockets of other tenants never see it), checked against what each
socket's principal may read (:mod:`inopsio.events.visibility`: cached permission answers, and the
event's data decoded once, only if a row-level rule asks for it) and offered to the socket's bounded
queue without waiting: a slow socket overflows its own queue and is closed, and never holds up the
others. When the Redis connection is lost and comes back, every socket catches up from the last event
it was sent, through the event log.

Permissions and tenants change while sockets stay open: every :data:`RECHECK_SECONDS` the hub
looks each tenant up once and re-checks its sockets in memory, a few at a time (never a timer
and a database lookup per socket, which a thousand sockets opened together would turn into a
burst every round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import msgspec

from inopsio.events.bus import realtime_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from inopsio.realtime.topics import TopicPolicy
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.realtime")
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
RECONNECT_SECONDS = 1.0
RECHECK_SECONDS = 30.0
#: Sockets re-checked in a row before the hub lets other work (events) run.
RECHECK_BATCH = 100


class EventHeader(msgspec.Struct):
    """The fields of a published :class:`~inopsio.events.schemas.DomainEvent` the hub routes by."""

    id: UUID
    type: str
    tenant_id: UUID


class _EventData(msgspec.Struct):
    data: dict[str, Any] = {}


_data_decoder = msgspec.json.Decoder(_EventData)


class SharedEvent:
    """One event as this process received it, shared by its tenant's sockets.

    ``frames`` holds the frame for each topic, built by the first socket that needs it, so an event
    is encoded once per topic, not once per socket; :meth:`data` decodes the event's data the first
    time a socket's row-level rule asks for it, and never again.
    """

    __slots__ = ("_data", "frames", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.frames: dict[str, str] = {}
        self._data: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        if self._data is None:
            try:
                self._data = _data_decoder.decode(self.raw).data
            except msgspec.MsgspecError:
                self._data = {}  # row-level rules fail closed on data they do not recognise
        return self._data


class Subscriber(Protocol):
    """What the hub needs of a connection."""

    tenant_id: UUID

    def offer(self, header: EventHeader, event: SharedEvent) -> None:
        """Queue the event if it matches the connection's topics and its principal may read it; must not block."""

    def resync(self) -> None:
        """Events may have been missed (the Redis feed was down): catch up from the event log."""

    def recheck(self, tenant: TenantInfo | None) -> None:
        """Close the socket or drop topics its principal may no longer follow in ``tenant`` (``None``: gone)."""


@dataclass
class _TenantFeed:
    subscribers: set[Subscriber] = field(default_factory=set)
    ready: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class RealtimeHub:
    """Subscribes to tenants' channels on demand and hands their events to the open sockets."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        policy: TopicPolicy,
        tenant_by_id: Callable[[UUID], Awaitable[TenantInfo | None]],
    ) -> None:
        self.redis = redis
        self.namespace = namespace
        #: Which topics a connection may follow (see :mod:`inopsio.realtime.topics`).
        self.policy = policy
        self.tenant_by_id = tenant_by_id
        #: Always subscribed, so the pub/sub connection exists before any tenant's channel does.
        self.control_channel = f"{namespace}:realtime:hub"
        self._feeds: dict[UUID, _TenantFeed] = {}
        self._tenant_of_channel: dict[bytes, UUID] = {}
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        #: Events handed to sockets, and sockets closed for falling behind (for metrics).
        self.delivered = 0
        self.overflowed = 0

    @property
    def connections(self) -> int:
        """Open WebSocket connections in this process."""
        return sum(len(feed.subscribers) for feed in self._feeds.values())

    def channel(self, tenant_id: UUID) -> str:
        return realtime_channel(self.namespace, tenant_id)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="realtime hub"),
            asyncio.create_task(self._recheck_forever(), name="realtime recheck"),
        ]
        try:
            await asyncio.wait_for(self._connected.wait(), SUBSCRIBE_TIMEOUT_SECONDS * 2)
        except TimeoutError:
            # Redis is away: the app serves everything else, and the hub connects when Redis returns.
            log.warning("real-time hub could not reach Redis yet; WebSockets wait for it")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []

    # -- sockets -----------------------------------------------------------------------------------

    async def attach(self, subscriber: Subscriber) -> None:
        """Register a socket; returns once Redis has confirmed its tenant's subscription."""
        tenant_id = subscriber.tenant_id
        feed = self._feeds.get(tenant_id)
        if feed is None:
            feed = self._feeds[tenant_id] = _TenantFeed()
            channel = self.channel(tenant_id)
            self._tenant_of_channel[channel.encode()] = tenant_id
            try:
                await self._send("subscribe", channel)
            except Exception as exc:
                if not feed.ready.done():
                    feed.ready.set_exception(exc)
        feed.subscribers.add(subscriber)
        try:
            await asyncio.wait_for(asyncio.shield(feed.ready), SUBSCRIBE_TIMEOUT_SECONDS)
        except BaseException:
            await self.detach(subscriber)
            raise

    async def detach(self, subscriber: Subscriber) -> None:
        tenant_id = subscriber.tenant_id
        feed = self._feeds.get(tenant_id)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if feed.subscribers:
            return
        del self._feeds[tenant_id]
        if not feed.ready.done():
            feed.ready.cancel()
        channel = self.channel(tenant_id)
        self._tenant_of_channel.pop(channel.encode(), None)
        with contextlib.suppress(Exception):  # a lost connection drops the subscription anyway
            await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: str) -> None:
        # Serialised so SUBSCRIBE/UNSUBSCRIBE reach Redis in the order the sockets came and went.
        async with self._lock:
            if self._pubsub is None:
                return  # not connected: _run subscribes every current tenant when it connects
            await getattr(self._pubsub, command)(channel)

    # -- permissions -------------------------------------------------------------------------------

    async def recheck(self) -> None:
        """Re-check every open socket now: one lookup per tenant, then each socket in memory."""
        for tenant_id, feed in list(self._feeds.items()):
            tenant = await self.tenant_by_id(tenant_id)
            for done, subscriber in enumerate(list(feed.subscribers), 1):
                subscriber.recheck(tenant)
                if done % RECHECK_BATCH == 0:
                    await asyncio.sleep(0)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                await self.recheck()
            except Exception:
                log.warning("re-checking the real-time sockets failed; trying again later", exc_info=True)

    # -- the feed ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        first = True
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    async with self._lock:
                        await pubsub.subscribe(self.control_channel, *(self.channel(t) for t in self._feeds))
                        self._pubsub = pubsub
                    self._connected.set()
                    if not first:
                        for feed in list(self._feeds.values()):
                            for subscriber in list(feed.subscribers):
                                subscriber.resync()
                    first = False
                    while True:
                        # Not listen(): its blocking read ends at the client's socket_timeout.
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("real-time feed from Redis lost; reconnecting in %s s", RECONNECT_SECONDS, exc_info=True)
            finally:
                self._pubsub = None
            await asyncio.sleep(RECONNECT_SECONDS)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        tenant_id = self._tenant_of_channel.get(channel)
        if tenant_id is None:
            return
        feed = self._feeds.get(tenant_id)
        if feed is None:
            return
        if kind == "subscribe":
            if not feed.ready.done():
                feed.ready.set_result(None)
            return
        if kind != "message":
            return
        raw = message["data"]
        try:
            header = msgspec.json.decode(raw, type=EventHeader)
        except msgspec.DecodeError:
            log.warning("ignoring a malformed message on %s", channel.decode(errors="replace"))
            return
        if header.tenant_id != tenant_id:
            # Never forward an event into another tenant, whoever published it on this channel.
            log.warning("dropping event %s of tenant %s published on %s", header.id, header.tenant_id, channel)
            return
        event = SharedEvent(raw)
        for subscriber in list(feed.subscribers):
            subscriber.offer(header, event)
