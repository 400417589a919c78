"""The CRM plugin is wired in through hooks: permissions, event types, migrations, tenant isolation."""

from __future__ import annotations

from typing import Any

CRM_EVENTS = {
    "crm.lead.created",
    "crm.lead.updated",
    "crm.lead.assigned",
    "crm.lead.converted",
    "crm.lead.merged",
    "crm.deal.created",
    "crm.deal.stage_changed",
    "crm.deal.won",
    "crm.deal.lost",
}


async def test_event_catalog_lists_every_crm_event_with_its_schema(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant, "owner")
    response = await client.get("/api/v1/events/catalog", headers=headers)
    assert response.status_code == 200, response.text
    by_name = {item["type"]: item for item in response.json()}
    assert set(by_name) >= CRM_EVENTS
    assert "lead_id" in str(by_name["crm.lead.created"])


async def test_default_roles_get_sensible_crm_permissions(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    authorizer = kernel.identity.authorizer
    assert set(authorizer.role_permissions("viewer", tenant.id)) & {
        "crm.leads.read",
        "crm.leads.write",
    } == {"crm.leads.read"}
    member = set(authorizer.role_permissions("member", tenant.id))
    assert {"crm.leads.write", "crm.deals.write"} <= member
    assert not member & {"crm.leads.read_all", "crm.leads.delete", "crm.leads.import", "crm.leads.assign"}
    manager = set(authorizer.role_permissions("manager", tenant.id))
    assert {"crm.leads.read_all", "crm.leads.assign", "crm.leads.import", "crm.leads.export"} <= manager
