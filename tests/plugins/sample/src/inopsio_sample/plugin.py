"""Hook implementations of the sample plugin: it only points at its models, routes and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from inopsio import hookimpl
from inopsio.automation import NodeContext, NodeType
from inopsio.events.schemas import DomainEvent, EventType
from inopsio.identity.rbac import Permission
from inopsio.web import DashboardCard, MenuEntry, WebAssets
from inopsio_sample.controllers import NoteController, NoteCreated, get_public_note, start_note_count
from inopsio_sample.jobs import count_notes, report_scope, tag_note, tally_notes
from inopsio_sample.models import Note, NoteTag
from inopsio_sample.pages import notes_card, notes_page

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


@hookimpl
def register_models(register: Any) -> None:
    register(Note)
    register(NoteTag)


@hookimpl
def register_migrations(register: Any) -> None:
    register(MIGRATIONS, "sample")


@hookimpl
def register_routes(register: Any) -> None:
    register(NoteController)
    register(get_public_note)
    register(start_note_count)
    register(notes_page)
    register(notes_card)


@hookimpl
def register_web_assets(register: Any) -> None:
    here = Path(__file__).resolve().parent
    register(WebAssets(templates=here / "templates", static=here / "static"))


@hookimpl
def register_menu(register: Any) -> None:
    register(MenuEntry(label="Notes", href="/sample/notes", section="Sample", permission="sample.notes.read"))


@hookimpl
def register_dashboard_cards(register: Any) -> None:
    register(
        DashboardCard(
            name="sample.notes",
            title="Notes",
            href="/sample/cards/notes",
            link="/sample/notes",
            permission="sample.notes.read",
        )
    )


@hookimpl
def register_jobs(register: Any) -> None:
    # Short delays and timeout so the tests of retries and timeouts run in about a second.
    register(report_scope, name="sample.report_scope", max_tries=3, timeout=1.0, retry_delay=0.2)
    register(count_notes, name="sample.count_notes", max_tries=1, timeout=30.0)
    register(tag_note, name="sample.tag_note", max_tries=3, timeout=10.0, retry_delay=0.2)
    # Once a day per tenant with the sample module on; tests run its fan-out directly.
    register(
        tally_notes,
        name="sample.tally_notes",
        cron={"hour": {4}, "minute": {0}, "second": 0},
        per_tenant=True,
        max_tries=2,
        timeout=10.0,
        retry_delay=0.1,
    )


@hookimpl
def register_permissions(register: Any) -> None:
    register(
        Permission(name="sample.notes.read", description="Read notes", roles=("admin", "manager", "member", "viewer"))
    )
    register(Permission(name="sample.notes.write", description="Write notes", roles=("admin", "manager", "member")))
    register(Permission(name="sample.notes.delete", description="Delete notes", roles=("admin", "manager")))


@hookimpl
async def on_tenant_created(tenant: Any, session: Any) -> None:
    from inopsio_sample.models import Note

    session.add(Note(tenant_id=tenant.id, title="Welcome", body=f"First note of {tenant.name}"))


@hookimpl
def register_event_types(register: Any) -> None:
    register(
        EventType(
            name="sample.note.created",
            description="A note was written",
            permission="sample.notes.read",
            payload=NoteCreated,
        )
    )


async def tag_new_note(event: DomainEvent, ctx: dict[str, Any]) -> None:
    """Tag each new note "new": a database effect that must happen once per event."""
    ctx["session"].add(NoteTag(note_id=event.data["note_id"], tag="new"))


@hookimpl
def register_event_handlers(register: Any) -> None:
    register("sample.note.created", tag_new_note, name="sample.tag_new_note")


class TagConfig(msgspec.Struct, kw_only=True):
    tag: str = msgspec.field(default="flagged")


async def tag_note_node(ctx: NodeContext, config: TagConfig, data: dict[str, Any]) -> dict[str, Any]:
    """Action node: tag the note in ``data["note_id"]``."""
    if "note_id" not in data:
        raise ValueError("the item has no note_id")
    ctx.session.add(NoteTag(note_id=data["note_id"], tag=config.tag))
    return {**data, "tag": config.tag}


@hookimpl
def register_workflow_nodes(register: Any) -> None:
    register(
        NodeType(
            name="sample.note.created",
            kind="trigger",
            title="Note created",
            description="Starts when a note is written",
            event="sample.note.created",
        )
    )
    register(
        NodeType(
            name="sample.note.tag",
            kind="action",
            title="Tag note",
            description="Adds a tag to the note",
            config=TagConfig,
            execute=tag_note_node,
        )
    )
