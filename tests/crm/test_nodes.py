"""The CRM's workflow node types: listed in the catalogue, and their executors run directly."""

from __future__ import annotations

from typing import Any

import pytest

from inopsio.automation import NodeContext, parse_config

LEADS = "/api/v1/crm/leads"


async def test_node_types_are_listed_with_config_schemas(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    response = await client.get("/api/v1/automation/node-types", headers=owner.headers)
    assert response.status_code == 200, response.text
    nodes = {n["name"]: n for n in response.json() if n["module"] == "crm"}
    assert set(nodes) == {
        "crm.lead.created",
        "crm.deal.stage_changed",
        "crm.lead.assign",
        "crm.deal.move",
        "crm.lead.add_note",
    }
    assert nodes["crm.lead.created"]["event"] == "crm.lead.created"
    assert "stage_id" in str(nodes["crm.deal.move"]["config_schema"])


async def test_executors_assign_move_and_note(
    client: Any, kernel: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    rep = await member(tenant, "member")
    lead = await new_lead(owner.headers, name="Flow Lead")
    pipeline = (await client.get("/api/v1/crm/pipelines", headers=owner.headers)).json()[0]
    deal = (await client.post("/api/v1/crm/deals", json={"title": "Flow deal"}, headers=owner.headers)).json()
    nodes = {name: node for name, (_, node) in kernel.node_types.items()}

    async def run(name: str, config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        node = nodes[name]
        async with kernel.db.session(tenant.id) as session:
            ctx = NodeContext(kernel=kernel, tenant_id=tenant.id, session=session)
            result: dict[str, Any] = await node.execute(ctx, parse_config(node, config), data)
            return result

    out = await run("crm.lead.assign", {"owner_id": rep.user_id}, {"lead_id": lead["id"]})
    assert out["owner_id"] == rep.user_id
    assert (await client.get(f"{LEADS}/{lead['id']}", headers=owner.headers)).json()["owner_id"] == rep.user_id
    with pytest.raises(ValueError, match="round-robin"):
        await run("crm.lead.assign", {"round_robin": True}, {"lead_id": lead["id"]})
    await client.put(
        "/api/v1/crm/assignment-rule", json={"enabled": True, "member_ids": [owner.user_id]}, headers=owner.headers
    )
    out = await run("crm.lead.assign", {"round_robin": True}, {"lead_id": lead["id"]})
    assert out["owner_id"] == owner.user_id
    with pytest.raises(ValueError, match="not a member"):
        await run("crm.lead.assign", {"owner_id": "0192f0a0-0000-7000-8000-000000000000"}, {"lead_id": lead["id"]})
    with pytest.raises(ValueError, match="lead_id"):
        await run("crm.lead.assign", {}, {})
    won = pipeline["stages"][3]["id"]
    out = await run("crm.deal.move", {"stage_id": won}, {"deal_id": deal["id"]})
    assert out["stage_id"] == won
    assert (await client.get(f"/api/v1/crm/deals/{deal['id']}", headers=owner.headers)).json()["closed_at"]
    with pytest.raises(ValueError, match=r"crm\.deal\.move"):
        await run("crm.deal.move", {"stage_id": "nope"}, {"deal_id": deal["id"]})
    out = await run("crm.lead.add_note", {"body": "Call $name back, $$5 off"}, {"lead_id": lead["id"], "name": "Ada"})
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=owner.headers)).json()
    assert timeline[0]["body"] == "Call Ada back, $5 off"
    assert timeline[0]["id"] == out["note_id"]
