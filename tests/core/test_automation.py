"""Workflow node types: declared by plugins through a hook, listed per tenant, executed directly."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from inopsio import hookimpl
from inopsio.app import collect_node_types
from inopsio.automation import NodeContext, NodeType, parse_config
from inopsio.plugins import PluginError, build_plugin_manager


async def test_node_types_of_enabled_modules_are_listed_with_their_config_schema(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant, "member")
    response = await client.get("/api/v1/automation/node-types", headers=headers)
    assert response.status_code == 200, response.text
    by_name = {n["name"]: n for n in response.json()}
    trigger, action = by_name["sample.note.created"], by_name["sample.note.tag"]
    assert trigger["kind"] == "trigger"
    assert trigger["event"] == "sample.note.created"
    assert action["module"] == "sample"
    assert action["config_schema"]["$defs"]["TagConfig"]["properties"]["tag"]["default"] == "flagged"


async def test_a_tenant_without_the_module_does_not_see_its_node_types(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant(settings={"disabled_modules": ["sample"]})
    headers = await sign_in(tenant, "member")
    response = await client.get("/api/v1/automation/node-types", headers=headers)
    assert response.status_code == 200, response.text
    assert not [n for n in response.json() if n["module"] == "sample"]


async def test_node_types_need_a_signed_in_user(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    response = await client.get("/api/v1/automation/node-types", headers={"X-Tenant": tenant.slug})
    assert response.status_code == 401


async def test_an_action_executor_runs_in_the_tenant_transaction(kernel: Any, make_tenant: Any) -> None:
    from inopsio_sample.models import Note, NoteTag

    tenant = await make_tenant()
    _, node = kernel.node_types["sample.note.tag"]
    async with kernel.db.session(tenant.id) as session:
        note = Note(title="Call back", body="")
        session.add(note)
        await session.flush()
        ctx = NodeContext(kernel=kernel, tenant_id=tenant.id, session=session)
        out = await node.execute(ctx, parse_config(node, {"tag": "vip"}), {"note_id": note.id})
        assert out["tag"] == "vip"
    async with kernel.db.session(tenant.id) as session:
        tags = (await session.scalars(select(NoteTag.tag).where(NoteTag.note_id == note.id))).all()
    assert "vip" in tags
    with pytest.raises(ValueError, match="tag"):
        parse_config(node, {"tag": 5})


def test_node_type_declarations_are_checked() -> None:
    async def run(ctx: Any, config: Any, data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(ValueError, match=r"<plugin>\.<thing>\.<verb>"):
        NodeType(name="assign", kind="action", title="t", description="d", execute=run)
    with pytest.raises(ValueError, match="must name the event"):
        NodeType(name="crm.lead.created", kind="trigger", title="t", description="d")
    with pytest.raises(ValueError, match="needs an execute"):
        NodeType(name="crm.lead.assign", kind="action", title="t", description="d")


def test_node_types_named_after_another_plugin_or_undeclared_events_stop_startup() -> None:
    class Events:
        types: dict[str, Any] = {"sample.note.created": object()}

    async def run(ctx: Any, config: Any, data: dict[str, Any]) -> dict[str, Any]:
        return data

    class Thief:
        @hookimpl
        def register_workflow_nodes(self, register: Any) -> None:
            register(NodeType(name="crm.lead.assign", kind="action", title="t", description="d", execute=run))

    registry = build_plugin_manager([], [Thief()], load_entry_points=False)
    with pytest.raises(PluginError, match="named after the plugin"):
        collect_node_types(registry, Events())  # type: ignore[arg-type]

    class Orphan:
        @hookimpl
        def register_workflow_nodes(self, register: Any) -> None:
            node = NodeType(
                name="test_automation.thing.seen", kind="trigger", title="t", description="d", event="x.y.z"
            )
            register(node)

    registry = build_plugin_manager([], [Orphan()], load_entry_points=False)
    with pytest.raises(PluginError, match="undeclared event"):
        collect_node_types(registry, Events())  # type: ignore[arg-type]


def test_config_struct_converts_plain_data() -> None:
    class Config(msgspec.Struct):
        stage: str

    async def run(ctx: Any, config: Any, data: dict[str, Any]) -> dict[str, Any]:
        return data

    node = NodeType(name="crm.deal.move", kind="action", title="Move", description="d", config=Config, execute=run)
    assert parse_config(node, {"stage": "won"}) == Config(stage="won")
