"""Workflow node types of the CRM: triggers on new leads and deal moves; actions that assign a lead,
move a deal and add a note. The workflow module runs them; they only need the kernel's NodeContext."""

from __future__ import annotations

import string
from typing import Annotated, Any
from uuid import UUID

import msgspec

from inopsio.automation import NodeContext, NodeType
from inopsio.errors import Problem
from inopsio_crm.access import Viewer
from inopsio_crm.leads.services import LeadService
from inopsio_crm.pipeline.schemas import DealMove
from inopsio_crm.pipeline.services import PipelineService


class AssignLeadConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give the lead to ``owner_id``, or to the next member of the round-robin rule."""

    owner_id: UUID | None = None
    round_robin: bool = False


class MoveDealConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    stage_id: UUID
    position: Annotated[int, msgspec.Meta(ge=0)] = 0


class AddNoteConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``body`` may name fields of the item: ``Call $name back`` (``$$`` for a dollar sign)."""

    body: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


def _workflow_viewer(ctx: NodeContext) -> Viewer:
    # A workflow acts for the tenant, not for one member: it sees and may assign every lead.
    return Viewer(user_id=ctx.actor_id, read_all=True, can_assign=True, label="workflow")


def _id(data: dict[str, Any], key: str) -> UUID:
    try:
        return UUID(str(data[key]))
    except (KeyError, ValueError):
        raise ValueError(f"the item has no {key}") from None


async def _call(action: Any) -> Any:
    """Run a service call; a problem the user can fix becomes the ``ValueError`` runners expect."""
    try:
        return await action
    except Problem as exc:
        errors = exc.members.get("errors")
        raise ValueError(exc.detail + (f" ({errors})" if errors else "")) from None


async def assign_lead(ctx: NodeContext, config: AssignLeadConfig, data: dict[str, Any]) -> dict[str, Any]:
    lead_id = _id(data, "lead_id")
    tenant = await ctx.kernel.tenants.get(ctx.tenant_id)
    service = LeadService(ctx.kernel, ctx.session, tenant, _workflow_viewer(ctx))
    owner_id = config.owner_id
    if config.round_robin:
        owner_id = await service.next_round_robin_owner()
        if owner_id is None:
            raise ValueError("the round-robin rule is off or has no members")
    how = "round_robin" if config.round_robin else "workflow"
    lead = await _call(service.assign(lead_id, owner_id, how=how))
    return {**data, "owner_id": str(lead.owner_id) if lead.owner_id else None}


async def move_deal(ctx: NodeContext, config: MoveDealConfig, data: dict[str, Any]) -> dict[str, Any]:
    deal_id = _id(data, "deal_id")
    tenant = await ctx.kernel.tenants.get(ctx.tenant_id)
    service = PipelineService(ctx.kernel, ctx.session, tenant, _workflow_viewer(ctx))
    current = await _call(service.deal(deal_id))
    moved = await _call(
        service.move_deal(
            deal_id, DealMove(stage_id=config.stage_id, position=config.position, version=current.version)
        )
    )
    return {**data, "stage_id": str(moved.stage_id), "version": moved.version}


async def add_note(ctx: NodeContext, config: AddNoteConfig, data: dict[str, Any]) -> dict[str, Any]:
    lead_id = _id(data, "lead_id")
    tenant = await ctx.kernel.tenants.get(ctx.tenant_id)
    service = LeadService(ctx.kernel, ctx.session, tenant, _workflow_viewer(ctx))
    body = string.Template(config.body).safe_substitute({k: v for k, v in data.items() if isinstance(v, str | int)})
    note = await _call(service.add_note(lead_id, body))
    return {**data, "note_id": str(note.id)}


NODE_TYPES = (
    NodeType(
        name="crm.lead.created",
        kind="trigger",
        title="Lead created",
        description="Starts when a lead is created; the item is the lead (lead_id, name, email, owner_id, ...)",
        event="crm.lead.created",
    ),
    NodeType(
        name="crm.deal.stage_changed",
        kind="trigger",
        title="Deal moved",
        description="Starts when a deal moves to another stage or position (deal_id, from_stage_id, to_stage_id)",
        event="crm.deal.stage_changed",
    ),
    NodeType(
        name="crm.lead.assign",
        kind="action",
        title="Assign lead",
        description="Gives the item's lead to a member, or to the next one of the round-robin rule",
        config=AssignLeadConfig,
        execute=assign_lead,
    ),
    NodeType(
        name="crm.deal.move",
        kind="action",
        title="Move deal",
        description="Moves the item's deal to a stage of its pipeline",
        config=MoveDealConfig,
        execute=move_deal,
    ),
    NodeType(
        name="crm.lead.add_note",
        kind="action",
        title="Add note to lead",
        description="Writes a note on the item's lead's timeline",
        config=AddNoteConfig,
        execute=add_note,
    ),
)
