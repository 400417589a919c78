"""Who may read an event: the activity feed, the WebSocket and webhooks show an event only to a reader
who holds its type's permission and passes its row-level rule (docs/events.md, "Who may read an event").

The cases come from a security report: a member (403 on ``/api/v1/audit``) read every audit entry,
and another member's private lead, through the feed and a socket subscribed to ``*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from inopsio.db.base import new_id
from inopsio.events import controllers as events_controllers
from inopsio.events.schemas import ANY_MEMBER, EventType
from inopsio.events.visibility import RoleReader, UserReader, readable

LEADS = "/api/v1/crm/leads"
AUDIT = "kernel.audit.recorded"


async def user_id_of(client: Any, headers: dict[str, str]) -> str:
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return str(me.json()["user_id"])


async def new_lead(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Ada Lovelace", **fields}
    response = await client.post(f"{LEADS}?allow_duplicate=true", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def feed(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every event of the feed the caller may read, paged through to the end."""
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        query = {"limit": 500, **params, **({"after": after} if after else {})}
        response = await client.get("/api/v1/events", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items
    pytest.fail("the feed never ended")


def lead_ids_in(events: list[dict[str, Any]]) -> set[str]:
    """The leads the events name (as lead, surviving or merged lead)."""
    keys = ("lead_id", "survivor_id", "merged_id")
    return {str(e["data"][k]) for e in events if e["type"].startswith("crm.lead.") for k in keys if k in e["data"]}


@pytest.fixture
async def office(client: Any, make_tenant: Any, sign_in: Any) -> dict[str, Any]:
    """A tenant with an admin, a manager and members Ann and Bob; Bob keeps a lead of his own private,
    updates it, converts it and has one merged into another (every kind of lead event), while Ann
    has a lead of her own and there is one nobody owns."""
    tenant = await make_tenant()
    admin, manager = await sign_in(tenant, "admin"), await sign_in(tenant, "manager")
    ann, bob = await sign_in(tenant, "member"), await sign_in(tenant, "member")
    ann_id, bob_id = await user_id_of(client, ann), await user_id_of(client, bob)
    private = await new_lead(client, bob, name="Bob's Secret", email="secret@bob.example", owner_id=bob_id)
    updated = await client.patch(f"{LEADS}/{private['id']}", json={"status": "contacted"}, headers=bob)
    assert updated.status_code == 200, updated.text
    converted = await new_lead(client, bob, name="Bob Converted", owner_id=bob_id)
    conversion = await client.post(f"{LEADS}/{converted['id']}/convert", json={"create_deal": False}, headers=bob)
    assert conversion.status_code == 200, conversion.text
    duplicate = await new_lead(client, bob, name="Bob's Secret", owner_id=bob_id)
    merged = await client.post(
        f"{LEADS}/{private['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=manager
    )
    assert merged.status_code == 200, merged.text
    own = await new_lead(client, ann, name="Ann's Own", owner_id=ann_id)
    unassigned = await new_lead(client, manager, name="Nobody's")
    return {
        "tenant": tenant,
        "admin": admin,
        "manager": manager,
        "ann": ann,
        "bob": bob,
        "ann_id": ann_id,
        "private": {private["id"], converted["id"], duplicate["id"]},
        "visible": {own["id"], unassigned["id"]},
    }


async def test_a_members_feed_holds_no_audit_entry_and_no_private_lead_of_another_member(
    client: Any, office: dict[str, Any]
) -> None:
    assert (await client.get("/api/v1/audit", headers=office["ann"])).status_code == 403
    events = await feed(client, office["ann"])
    assert AUDIT not in {e["type"] for e in events}
    seen = lead_ids_in(events)
    assert not seen & office["private"]
    assert not any("secret" in json.dumps(e["data"]).lower() for e in events)
    # Her own lead and the unassigned one stay in her feed, with every event about them.
    assert office["visible"] <= seen
    assert {e["type"] for e in events if e["data"].get("lead_id") in office["visible"]} >= {
        "crm.lead.created",
        "crm.lead.assigned",
    }
    # Even asked for by type, in a page of its own.
    response = await client.get("/api/v1/events", params={"type": AUDIT}, headers=office["ann"])
    assert response.json() == {"items": [], "next_after": None}


async def test_an_admin_reads_the_audit_entries_and_a_manager_every_lead(client: Any, office: dict[str, Any]) -> None:
    admin_events = await feed(client, office["admin"])
    assert AUDIT in {e["type"] for e in admin_events}
    assert office["private"] | office["visible"] <= lead_ids_in(admin_events)
    manager_events = await feed(client, office["manager"])
    assert AUDIT not in {e["type"] for e in manager_events}  # kernel.audit.read is the admin's
    manager_sees = lead_ids_in(manager_events)
    assert office["private"] | office["visible"] <= manager_sees
    # Bob sees his own.
    assert office["private"] <= lead_ids_in(await feed(client, office["bob"]))


async def test_an_api_key_made_by_a_member_reads_the_feed_as_that_member(
    client: Any, kernel: Any, office: dict[str, Any]
) -> None:
    tenant = office["tenant"]
    _, secret = await kernel.identity.api_keys.create(
        tenant.id, office["ann_id"], "feed reader", ["kernel.events.read", "crm.leads.read"], None
    )
    key = {"X-Tenant": tenant.slug, "Authorization": f"Bearer {secret}"}
    events = await feed(client, key)
    assert AUDIT not in {e["type"] for e in events}
    seen = lead_ids_in(events)
    assert not seen & office["private"]
    assert office["visible"] <= seen


async def test_feed_pages_stay_full_and_complete_when_most_events_are_hidden(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, monkeypatch: Any
) -> None:
    # Small batches and a small scan cap, so a page needs several batches and may end early.
    monkeypatch.setattr(events_controllers, "FEED_BATCH", 4)
    tenant = await make_tenant()
    ann, boss = await sign_in(tenant, "member"), await sign_in(tenant, "manager")
    someone_else = str(new_id())
    visible: list[str] = []
    every: list[str] = []
    async with kernel.db.session(tenant.id) as session:
        for index in range(60):
            unassigned = index % 6 == 5
            lead_id = str(new_id())
            every.append(lead_id)
            await kernel.events.publish(
                session,
                "crm.lead.created",
                {
                    "lead_id": lead_id,
                    "name": f"lead {index}",
                    "email": None,
                    "company": "",
                    "source": "",
                    "status": "new",
                    "owner_id": None if unassigned else someone_else,
                },
            )
            if unassigned:
                visible.append(lead_id)

    async def pages(headers: dict[str, str], limit: int) -> list[list[str]]:
        result, after = [], None
        for _ in range(100):
            params = {"type": "crm.lead.*", "limit": limit, **({"after": after} if after else {})}
            page = (await client.get("/api/v1/events", params=params, headers=headers)).json()
            result.append([e["data"]["lead_id"] for e in page["items"]])
            after = page["next_after"]
            if after is None:
                return result
        pytest.fail("paging never ended")

    # Ten visible leads among sixty: pages of three are full until the last, nothing is skipped or repeated.
    ann_pages = await pages(ann, 3)
    assert [len(p) for p in ann_pages] == [3, 3, 3, 1]
    assert [lead for page in ann_pages for lead in page] == visible
    # A manager reads every lead: the same paging brings all sixty.
    boss_pages = await pages(boss, 7)
    assert [len(p) for p in boss_pages] == [7] * 8 + [4]
    assert [lead for page in boss_pages for lead in page] == every
    # A bounded scan ends a page early, with a cursor past what it looked at: paging on still
    # brings every visible event exactly once, in order.
    monkeypatch.setattr(events_controllers, "FEED_SCAN_LIMIT", 8)
    capped = await pages(ann, 3)
    assert any(len(p) < 3 for p in capped[:-1])
    assert [lead for page in capped for lead in page] == visible


# -- the WebSocket -----------------------------------------------------------------------------------


def socket(live_server: Any, headers: dict[str, str]) -> Any:
    return connect(f"{live_server.ws_url}/api/v1/ws", additional_headers=headers)


async def subscribe(ws: ClientConnection, *topics: str, since: Any = None) -> None:
    message: dict[str, Any] = {"op": "subscribe", "topics": list(topics)}
    if since is not None:
        message["since"] = str(since)
    await ws.send(json.dumps(message))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
    assert reply["op"] == "subscribed", reply


async def events_within(ws: ClientConnection, seconds: float = 1.0) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await ws.recv())
                if message["op"] == "event":
                    received.append(message["event"])
    return received


async def test_a_members_socket_on_every_topic_gets_neither_audit_entries_nor_private_leads(
    live_server: Any, client: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    admin, ann, bob = await sign_in(tenant, "admin"), await sign_in(tenant, "member"), await sign_in(tenant, "member")
    bob_id = await user_id_of(client, bob)
    await drain_events()
    since = new_id()
    async with socket(live_server, ann) as ann_ws, socket(live_server, admin) as admin_ws:
        await subscribe(ann_ws, "*")
        await subscribe(admin_ws, "*")
        await sign_in(tenant, "viewer")  # a sign-in: an audit entry
        private = await new_lead(client, bob, name="Bob's Secret", owner_id=bob_id)
        shared = await new_lead(client, bob, name="For everyone")
        await drain_events()
        ann_live, admin_live = await events_within(ann_ws), await events_within(admin_ws)
    # The admin's socket got them all: the member's was not just slow.
    assert AUDIT in {e["type"] for e in admin_live}
    assert {private["id"], shared["id"]} <= lead_ids_in(admin_live)
    assert AUDIT not in {e["type"] for e in ann_live}
    assert lead_ids_in(ann_live) == {shared["id"]}

    # Catching up from the log with ``since`` applies the same rule.
    async with socket(live_server, ann) as ws:
        await subscribe(ws, "*", since=since)
        caught_up = await events_within(ws)
    assert [e["id"] for e in caught_up] == [e["id"] for e in ann_live]
    assert AUDIT not in {e["type"] for e in caught_up}


async def test_a_topic_of_only_unreadable_types_is_refused(live_server: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    async with socket(live_server, await sign_in(tenant, "member")) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": [AUDIT, "kernel.*"]}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
        subscribed = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
    assert (error["op"], error["code"], error["topic"]) == ("error", "forbidden", AUDIT)
    assert subscribed["topics"] == ["kernel.*"]  # its notifications are hers to read


# -- the rule itself --------------------------------------------------------------------------------------


async def test_the_rule_reads_roles_and_users_and_fails_closed(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    authorizer = kernel.identity.authorizer
    lead_created = kernel.events.types["crm.lead.created"]
    stranger = UserReader(authorizer, new_id(), tenant.id)  # no member of this tenant
    admin = RoleReader(authorizer, "admin", tenant.id)
    assert readable(kernel.events.types[AUDIT], admin, {})
    assert not readable(kernel.events.types[AUDIT], stranger, {})
    assert readable(lead_created, admin, {"owner_id": str(new_id())})
    assert not readable(lead_created, stranger, {"owner_id": None})
    assert not readable(None, admin, {})  # a type no loaded plugin declares any more
    member = await kernel.identity.accounts.create_member(tenant, f"m-{new_id()}@example.com", None, "member")
    reader = UserReader(authorizer, member.id, tenant.id)
    assert readable(lead_created, reader, {"owner_id": str(member.id)})
    assert readable(lead_created, reader, {"owner_id": None})
    assert not readable(lead_created, reader, {"owner_id": str(new_id())})
    assert not readable(lead_created, reader, {})  # stored before lead events named their owner

    def broken(data: Any, reader: Any) -> bool:
        raise KeyError("owner")

    assert not readable(EventType(name="x.y.z", description="", permission=ANY_MEMBER, visible=broken), reader, {})
