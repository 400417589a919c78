"""Real time over real sockets: a uvicorn server in the tests' loop and the ``websockets`` client.

Each tenant's sockets get that tenant's events and nothing else, whatever topics they ask for;
topics are checked against RBAC; a reconnect with ``since`` gets what it missed exactly once; a
client that stops reading is disconnected without holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket as stdlib_socket
from typing import Any
from uuid import UUID

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from inopsio.db.base import new_id, utcnow
from inopsio.events.bus import realtime_channel
from inopsio.events.schemas import DomainEvent
from inopsio.realtime import connection as realtime_connection


async def create_note(client: Any, headers: dict[str, str], title: str = "Hello") -> dict[str, Any]:
    response = await client.post("/api/v1/sample/notes", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def socket(live_server: Any, headers: dict[str, str], query: str = "", **kwargs: Any) -> Any:
    return connect(f"{live_server.ws_url}/api/v1/ws{query}", additional_headers=headers, **kwargs)


async def receive(ws: ClientConnection, within: float = 1.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))  # type: ignore[no-any-return]


async def receive_note_event(ws: ClientConnection) -> dict[str, Any]:
    """The next ``sample.note.created`` event, passing over others "*" also brings (the kernel's own)."""
    while True:
        message = await receive(ws)
        if message["op"] == "event" and message["event"]["type"] == "sample.note.created":
            return message


async def subscribe(ws: ClientConnection, *topics: Any, since: Any = None) -> list[dict[str, Any]]:
    """Send a subscribe; return the error messages it caused, once ``subscribed`` arrives."""
    message: dict[str, Any] = {"op": "subscribe", "topics": list(topics)}
    if since is not None:
        message["since"] = str(since)
    await ws.send(json.dumps(message))
    errors: list[dict[str, Any]] = []
    while True:
        reply = await receive(ws)
        if reply["op"] == "subscribed":
            return errors
        assert reply["op"] == "error", reply
        errors.append(reply)


async def messages_within(ws: ClientConnection, seconds: float = 1.0) -> list[dict[str, Any]]:
    """Every message that arrives within ``seconds``."""
    received: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                received.append(json.loads(await ws.recv()))
    return received


async def nothing_arrives(ws: ClientConnection, seconds: float = 1.0) -> None:
    with contextlib.suppress(TimeoutError):
        message = await asyncio.wait_for(ws.recv(), seconds)
        pytest.fail(f"unexpected message: {message!r}")


async def test_a_subscriber_receives_its_tenants_event_within_a_second(
    live_server: Any, client: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    async with socket(live_server, headers) as ws:
        assert await subscribe(ws, "sample.note.*") == []
        note = await create_note(client, headers)
        await drain_events()
        message = await receive(ws, within=1.0)
    assert message["op"] == "event"
    assert message["topic"] == "sample.note.*"
    assert message["event"]["type"] == "sample.note.created"
    assert message["event"]["tenant_id"] == str(tenant.id)
    assert message["event"]["data"]["note_id"] == note["id"]


async def test_a_client_of_tenant_b_never_receives_tenant_a_events_whatever_topic_it_asks_for(
    live_server: Any, client: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    a_headers, b_headers = await sign_in(a), await sign_in(b)
    namespace = kernel.settings.redis_namespace
    hostile = [
        "../",
        f"inopsio:events:{a.id}",
        realtime_channel(namespace, a.id),
        "*:*",
        f"{a.slug}.*",
        f"{a.id}",
        "sample.note.*\r\nSUBSCRIBE x",
        "sample..*",
        "**",
        "sample.note.created;" + str(a.id),
        {"tenant": str(a.id)},
        ["*"],
        None,
        "x" * 500,
    ]
    await drain_events()  # whatever the set-up published is delivered before the sockets open
    async with socket(live_server, a_headers) as ws_a, socket(live_server, b_headers) as ws_b:
        assert await subscribe(ws_a, "*") == []
        earlier = await create_note(client, a_headers, "before B subscribed")
        await drain_events()
        first = await receive_note_event(ws_a)
        assert first["event"]["data"]["note_id"] == earlier["id"]
        # Hostile topics are refused one by one; "*" is accepted, within B's own tenant; and asking to
        # catch up from one of A's event ids reads B's log only.
        errors = await subscribe(ws_b, "*", "sample.note.*", *hostile, since=first["event"]["id"])
        assert [e["code"] for e in errors] == ["invalid-topic"] * len(hostile)
        assert all(e["op"] == "error" and e["detail"] for e in errors)
        for _ in range(3):
            await create_note(client, a_headers)
        await kernel.events.emit(a.id, "sample.note.created", {"note_id": str(new_id()), "title": "emitted"})
        await drain_events()
        for _ in range(4):
            assert (await receive_note_event(ws_a))["event"]["tenant_id"] == str(a.id)
        # B's own kernel events (its audit entries) may arrive; nothing of A's ever does.
        for message in await messages_within(ws_b):
            assert message.get("event", {}).get("tenant_id", str(b.id)) == str(b.id), message
        # B's own events still reach B: the socket is live, it just never sees A.
        mine = await create_note(client, b_headers)
        await drain_events()
        message = await receive_note_event(ws_b)
        assert message["event"]["data"]["note_id"] == mine["id"]
        assert message["event"]["tenant_id"] == str(b.id)
    # A's token presented to B's address is refused at the handshake.
    assert (await refusal(live_server, {**a_headers, "X-Tenant": b.slug}))[0] == 4403


async def test_an_event_published_with_another_tenants_id_on_a_channel_is_dropped(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    async with socket(live_server, await sign_in(b)) as ws_b:
        await subscribe(ws_b, "*")
        forged = DomainEvent(
            id=new_id(), type="sample.note.created", tenant_id=a.id, actor=None, occurred_at=utcnow(), data={}
        )
        await kernel.redis.publish(realtime_channel(kernel.settings.redis_namespace, b.id), msgspec.json.encode(forged))
        await nothing_arrives(ws_b, 0.5)


async def refusal(live_server: Any, headers: Any, query: str = "") -> tuple[int, str]:
    """The close code and reason of a refused handshake: accepted, then closed at once, so that a
    browser (which cannot read the HTTP status of a refused handshake) can tell the causes apart."""
    async with socket(live_server, headers, query) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_handshake_without_valid_credentials_is_closed_with_4401(
    live_server: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    for headers, query in (
        ({"X-Tenant": tenant.slug}, ""),
        ({"X-Tenant": tenant.slug, "Authorization": "Bearer not-a-token"}, ""),
        ({"X-Tenant": tenant.slug, "Authorization": "Bearer iok_nope_nope"}, ""),
        ({"X-Tenant": tenant.slug}, "?access_token=forged"),
    ):
        code, reason = await refusal(live_server, headers, query)
        assert code == 4401, (headers, query, code, reason)
        assert reason


async def test_each_cause_of_a_refused_handshake_has_its_documented_close_code(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    headers = await sign_in(tenant)
    token = headers["Authorization"]
    user = await kernel.identity.accounts.create_member(tenant, f"k-{new_id()}@example.com", None, "owner")
    _, cannot_connect = await kernel.identity.api_keys.create(tenant.id, user.id, "x", ["sample.notes.read"], None)
    suspended = await make_tenant()
    suspended_headers = await sign_in(suspended)
    await kernel.tenants.suspend(suspended.id, "unpaid")
    cases = [
        # Two X-Tenant headers (a proxy may read the first, the kernel the last): a bad request.
        ([("X-Tenant", tenant.slug), ("X-Tenant", other.slug), ("Authorization", token)], 4400, "X-Tenant"),
        ({}, 4400, "belongs to a tenant"),
        ({"X-Tenant": f"no-such-{secrets.token_hex(4)}", "Authorization": token}, 4404, "no tenant"),
        ({"X-Tenant": other.slug, "Authorization": token}, 4403, "another tenant"),
        ({"X-Tenant": tenant.slug, "Authorization": f"Bearer {cannot_connect}"}, 4403, "API key"),
        (suspended_headers, 4403, "suspended"),
    ]
    for given, expected, words in cases:
        code, reason = await refusal(live_server, given)
        assert (code, words.lower() in reason.lower()) == (expected, True), (given, code, reason)
    # The same member with the right headers is let in.
    async with socket(live_server, headers) as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert await receive(ws) == {"op": "pong"}


async def test_the_access_token_query_parameter_authenticates_a_browser_like_client(
    live_server: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    token = (await sign_in(tenant))["Authorization"].removeprefix("Bearer ")
    async with socket(live_server, {"X-Tenant": tenant.slug}, f"?access_token={token}") as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert await receive(ws) == {"op": "pong"}


async def test_each_topic_is_checked_against_rbac(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    # A viewer reads notes but not the activity feed: the sample module's events, not "*".
    # Kernel topics need the activity feed's permission too (when the kernel declares event types).
    kernel_topic = "forbidden" if any(t.startswith("kernel.") for t in kernel.events.types) else "unknown-topic"
    async with socket(live_server, await sign_in(tenant, "viewer")) as ws:
        errors = await subscribe(ws, "*", "kernel.*", "sample.note.*", "nosuchmodule.deal.*", "sample.nothing.created")
    assert [(e["topic"], e["code"]) for e in errors] == [
        ("*", "forbidden"),
        ("kernel.*", kernel_topic),
        ("nosuchmodule.deal.*", "unknown-topic"),
        ("sample.nothing.created", "unknown-topic"),
    ]
    # An API key needs the permission on the key itself.
    user = await kernel.identity.accounts.create_member(tenant, f"k-{new_id()}@example.com", None, "owner")
    other = next(
        p for p in kernel.identity.authorizer.permissions if p.startswith("kernel.") and p.split(".")[1] != "events"
    )
    connect = "kernel.realtime.connect"
    _, no_sample = await kernel.identity.api_keys.create(tenant.id, user.id, "other", [connect, other], None)
    _, sample_only = await kernel.identity.api_keys.create(
        tenant.id, user.id, "notes", [connect, "sample.notes.read"], None
    )
    _, cannot_connect = await kernel.identity.api_keys.create(tenant.id, user.id, "x", ["sample.notes.read"], None)
    assert (await refusal(live_server, {"X-Tenant": tenant.slug, "Authorization": f"Bearer {cannot_connect}"}))[0] == (
        4403
    )
    async with socket(live_server, {"X-Tenant": tenant.slug, "Authorization": f"Bearer {no_sample}"}) as ws:
        errors = await subscribe(ws, "sample.note.*")
        assert [(e["topic"], e["code"]) for e in errors] == [("sample.note.*", "forbidden")]
    async with socket(live_server, {"X-Tenant": tenant.slug, "Authorization": f"Bearer {sample_only}"}) as ws:
        errors = await subscribe(ws, "sample.note.created", "*")
        assert [(e["topic"], e["code"]) for e in errors] == [("*", "forbidden")]


async def test_a_switched_off_module_cannot_be_followed(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant(settings={"disabled_modules": ["sample"]})
    async with socket(live_server, await sign_in(tenant)) as ws:
        errors = await subscribe(ws, "sample.note.*")
    assert [e["code"] for e in errors] == ["module-disabled"]


async def test_a_reconnect_with_since_gets_the_missed_events_exactly_once(
    live_server: Any, client: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    async with socket(live_server, headers) as ws:
        await subscribe(ws, "sample.note.*")
        await create_note(client, headers, "seen")
        await drain_events()
        last_seen = (await receive(ws))["event"]["id"]
    missed = [(await create_note(client, headers, f"missed {i}"))["id"] for i in range(3)]
    await drain_events()  # published while nobody listened
    undelivered = (await create_note(client, headers, "committed, not yet dispatched"))["id"]
    async with socket(live_server, headers) as ws:
        await subscribe(ws, "sample.note.*", since=last_seen)
        await drain_events()  # its live copy arrives after the log already sent it
        live = (await create_note(client, headers, "live"))["id"]
        await drain_events()
        received = []
        with contextlib.suppress(TimeoutError):
            while True:
                received.append(await receive(ws, within=1.0))
    assert [m["op"] for m in received] == ["event"] * 5
    assert [m["event"]["data"]["note_id"] for m in received] == [*missed, undelivered, live]
    ids = [UUID(m["event"]["id"]) for m in received]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_a_catch_up_larger_than_its_cap_ends_with_a_gap_message(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(realtime_connection, "CATCH_UP_LIMIT", 3)
    tenant = await make_tenant()
    since = new_id()
    async with kernel.db.session(tenant.id) as session:
        for i in range(5):
            await kernel.events.publish(session, "sample.note.created", {"note_id": str(new_id()), "title": f"{i}"})
    async with socket(live_server, await sign_in(tenant)) as ws:
        await subscribe(ws, "sample.note.*", since=since)
        messages = [await receive(ws) for _ in range(4)]
    assert [m["op"] for m in messages] == ["event", "event", "event", "gap"]
    assert messages[3]["after"] == messages[2]["event"]["id"]
    assert "/api/v1/events?after=" in messages[3]["detail"]


async def test_a_client_that_stops_reading_is_closed_and_does_not_hold_up_the_others(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(realtime_connection, "QUEUE_SIZE", 50)
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    channel = realtime_channel(kernel.settings.redis_namespace, tenant.id)
    overflowed = kernel.realtime.overflowed
    # A small fixed receive buffer (it also turns off the kernel's autotuning, up to 32 MB here).
    raw = stdlib_socket.socket()
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 16_384)
    raw.connect((live_server.host, live_server.port))
    raw.setblocking(False)
    async with socket(live_server, headers, sock=raw) as slow, socket(live_server, headers) as fast:
        await subscribe(slow, "sample.note.*")
        await subscribe(fast, "sample.note.*")
        slow.transport.pause_reading()  # a client that stops reading: the server's sends back up
        count = 300  # ~12 MB even after permessage-deflate: more than the buffers on the way hold

        async def read_fast() -> dict[str, Any]:
            for _ in range(count):
                message = await receive(fast, within=5.0)
            return message

        reader = asyncio.create_task(read_fast())
        for i in range(count):
            event = DomainEvent(
                id=new_id(),
                type="sample.note.created",
                tenant_id=tenant.id,
                actor=None,
                occurred_at=utcnow(),
                data={"note_id": str(i), "title": secrets.token_urlsafe(40_000)},
            )
            await kernel.redis.publish(channel, msgspec.json.encode(event))
        last = await reader
        assert last["event"]["data"]["note_id"] == str(count - 1)
        slow.transport.resume_reading()
        closed: ConnectionClosed | None = None
        try:
            while True:
                await asyncio.wait_for(slow.recv(), 5.0)
        except ConnectionClosed as exc:
            closed = exc
    assert closed is not None
    assert closed.rcvd is not None
    assert closed.rcvd.code == realtime_connection.CLOSE_TOO_SLOW
    assert kernel.realtime.overflowed > overflowed


async def test_open_connections_are_counted_on_the_kernel(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    before = kernel.realtime.connections
    async with socket(live_server, headers) as one, socket(live_server, headers) as two:
        await one.send('{"op":"ping"}')
        await two.send('{"op":"ping"}')
        await receive(one)
        await receive(two)
        assert kernel.realtime.connections == before + 2
        await two.send('{"op":"dance"}')
        assert (await receive(two))["code"] == "bad-message"
        await two.send("not json")
        assert (await receive(two))["code"] == "bad-message"
    for _ in range(50):
        if kernel.realtime.connections == before:
            break
        await asyncio.sleep(0.02)
    assert kernel.realtime.connections == before


# -- the fast path: the publishing process puts a committed event on the channel itself --------------


async def channel_messages(pubsub: Any, seconds: float = 0.5) -> list[dict[str, Any]]:
    """The events that crossed a Redis subscription within ``seconds``."""
    messages = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            messages.append(json.loads(message["data"]))
    return messages


async def test_a_committed_event_reaches_its_subscribers_before_any_dispatcher_and_crosses_redis_once(
    live_server: Any, client: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    async with kernel.redis.pubsub() as pubsub, socket(live_server, headers) as ws:
        await pubsub.subscribe(realtime_channel(kernel.settings.redis_namespace, tenant.id))
        await subscribe(ws, "sample.note.*")
        note = await create_note(client, headers)
        # The tests' app runs no dispatcher: the publishing process sent it right after its commit.
        message = await receive(ws, within=1.0)
        assert message["event"]["data"]["note_id"] == note["id"]
        # The dispatcher still handles it, and leaves the channel alone: it was published there already.
        assert await drain_events() >= 1
        await nothing_arrives(ws, 0.5)
        crossed = [m for m in await channel_messages(pubsub) if m["type"] == "sample.note.created"]
    assert [m["id"] for m in crossed] == [message["event"]["id"]]


async def test_an_event_whose_transaction_rolls_back_never_reaches_a_socket(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()

    class Abort(Exception):
        pass

    async with socket(live_server, await sign_in(tenant)) as ws:
        await subscribe(ws, "sample.note.*")
        with contextlib.suppress(Abort):
            async with kernel.db.session(tenant.id) as session:
                await kernel.events.publish(session, "sample.note.created", {"note_id": str(new_id()), "title": "x"})
                raise Abort
        await nothing_arrives(ws, 0.5)
        await drain_events()
        await nothing_arrives(ws, 0.5)


async def test_an_event_published_in_a_savepoint_reaches_sockets_only_if_the_savepoint_commits(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    kept, undone = str(new_id()), str(new_id())

    class Abort(Exception):
        pass

    async with socket(live_server, await sign_in(tenant)) as ws:
        await subscribe(ws, "sample.note.*")
        async with kernel.db.session(tenant.id) as session:
            with contextlib.suppress(Abort):
                async with session.begin_nested():
                    await kernel.events.publish(session, "sample.note.created", {"note_id": undone, "title": "x"})
                    raise Abort
            async with session.begin_nested():
                await kernel.events.publish(session, "sample.note.created", {"note_id": kept, "title": "y"})
        await drain_events()  # a savepoint's events take the dispatcher's path
        received = await messages_within(ws, 1.0)
    assert [m["event"]["data"]["note_id"] for m in received] == [kept]


async def test_the_dispatcher_publishes_an_event_whose_publisher_died_before_its_fast_path(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    from inopsio.events.bus import add_to_outbox

    tenant = await make_tenant()
    note_id = str(new_id())
    async with socket(live_server, await sign_in(tenant)) as ws:
        await subscribe(ws, "sample.note.*")
        # Written and committed like publish() does, with no fast path after it (the process "died").
        async with kernel.db.session(tenant.id) as session:
            add_to_outbox(session, tenant.id, "sample.note.created", {"note_id": note_id, "title": "x"}, None)
        await nothing_arrives(ws, 0.3)
        await drain_events()
        received = await messages_within(ws, 1.0)
    assert [m["event"]["data"]["note_id"] for m in received] == [note_id]


async def test_sockets_following_the_same_topic_get_the_same_frame(
    live_server: Any, client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant)
    async with (
        socket(live_server, headers) as one,
        socket(live_server, headers) as two,
        socket(live_server, headers) as other_topic,
    ):
        await subscribe(one, "sample.note.*")
        await subscribe(two, "sample.note.*")
        await subscribe(other_topic, "sample.note.created")
        await create_note(client, headers)
        frames = [await asyncio.wait_for(ws.recv(), 1.0) for ws in (one, two, other_topic)]
    assert frames[0] == frames[1]
    assert json.loads(frames[2])["topic"] == "sample.note.created"
    assert json.loads(frames[2])["event"] == json.loads(frames[0])["event"]


async def test_open_sockets_are_rechecked_against_their_tenants_modules_and_status(
    live_server: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    from inopsio.tenancy.schemas import TenantSettingsPatch

    tenant = await make_tenant()
    async with socket(live_server, await sign_in(tenant)) as ws:
        await subscribe(ws, "sample.note.*")
        await kernel.realtime.recheck()  # nothing changed: nothing said
        await nothing_arrives(ws, 0.3)
        await kernel.tenants.update_settings(tenant.id, TenantSettingsPatch(disabled_modules=["sample"]))
        await kernel.realtime.recheck()
        dropped = await receive(ws)
        assert (dropped["op"], dropped["code"], dropped["topic"]) == ("error", "module-disabled", "sample.note.*")
        assert dropped["detail"].startswith("No longer followed")
        await kernel.tenants.suspend(tenant.id, "unpaid")
        await kernel.realtime.recheck()
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == realtime_connection.CLOSE_FORBIDDEN
