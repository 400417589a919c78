"""Assigning leads: by hand, in bulk and by the tenant's round-robin rule, each publishing crm.lead.assigned."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from inopsio.events.models import EventRecord

LEADS = "/api/v1/crm/leads"
RULE = "/api/v1/crm/assignment-rule"


async def _assigned_events(kernel: Any, tenant_id: Any) -> list[dict[str, Any]]:
    async with kernel.db.session(tenant_id) as session:
        rows = await session.execute(
            select(EventRecord).where(EventRecord.type == "crm.lead.assigned").order_by(EventRecord.id)
        )
        return [r.data for r in rows.scalars()]


async def test_manual_and_bulk_assignment(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    manager = await member(tenant, "manager")
    rep = await member(tenant, "member")
    stranger = await member(other, "member")
    a = await new_lead(manager.headers, name="A")
    b = await new_lead(manager.headers, name="B")
    c = await new_lead(manager.headers, name="C")
    one = await client.post(f"{LEADS}/{a['id']}/assign", json={"owner_id": rep.user_id}, headers=manager.headers)
    assert one.status_code == 200, one.text
    assert one.json()["owner_id"] == rep.user_id
    refused = await client.post(f"{LEADS}/{a['id']}/assign", json={"owner_id": rep.user_id}, headers=rep.headers)
    assert refused.status_code == 403
    outsider = await client.post(
        f"{LEADS}/{a['id']}/assign", json={"owner_id": stranger.user_id}, headers=manager.headers
    )
    assert outsider.status_code == 422
    bulk = await client.post(
        f"{LEADS}/assign",
        json={"lead_ids": [a["id"], b["id"], c["id"]], "owner_id": rep.user_id},
        headers=manager.headers,
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json() == {"assigned": 2}
    # All or nothing: one unknown id and nothing changes.
    missing = "0192f0a0-0000-7000-8000-000000000000"
    partial = await client.post(
        f"{LEADS}/assign", json={"lead_ids": [a["id"], missing], "owner_id": None}, headers=manager.headers
    )
    assert partial.status_code == 422
    assert partial.json()["errors"] == [{"pointer": "/lead_ids/1", "detail": "no such lead"}]
    assert (await client.get(f"{LEADS}/{a['id']}", headers=manager.headers)).json()["owner_id"] == rep.user_id
    events = await _assigned_events(kernel, tenant.id)
    assert [e["how"] for e in events] == ["manual", "bulk", "bulk"]
    timeline = (await client.get(f"{LEADS}/{b['id']}/activities", headers=manager.headers)).json()
    assert timeline[0]["kind"] == "assigned"
    assert timeline[0]["data"]["owner_id"] == rep.user_id


async def test_round_robin_gives_new_unassigned_leads_to_members_in_turn(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    reps = [await member(tenant, "member") for _ in range(3)]
    assert (await client.get(RULE, headers=manager.headers)).json() == {
        "enabled": False,
        "member_ids": [],
        "next_member_id": None,
    }
    empty = await client.put(RULE, json={"enabled": True, "member_ids": []}, headers=manager.headers)
    assert empty.status_code == 422
    forbidden = await client.put(RULE, json={"enabled": False}, headers=reps[0].headers)
    assert forbidden.status_code == 403
    ids = [r.user_id for r in reps]
    rule = await client.put(RULE, json={"enabled": True, "member_ids": ids}, headers=manager.headers)
    assert rule.status_code == 200, rule.text
    assert rule.json()["next_member_id"] == ids[0]
    owners = [(await new_lead(manager.headers, name=f"RR {i}"))["owner_id"] for i in range(5)]
    assert owners == [ids[0], ids[1], ids[2], ids[0], ids[1]]
    explicit = await new_lead(manager.headers, name="Chosen", owner_id=manager.user_id)
    assert explicit["owner_id"] == manager.user_id
    assert (await client.get(RULE, headers=manager.headers)).json()["next_member_id"] == ids[2]
    events = await _assigned_events(kernel, tenant.id)
    assert [e["how"] for e in events] == ["round_robin"] * 5 + ["manual"]
    await client.put(RULE, json={"enabled": False, "member_ids": ids}, headers=manager.headers)
    assert (await new_lead(manager.headers, name="Off"))["owner_id"] is None
