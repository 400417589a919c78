"""Hook implementations of the sample plugin: it only points at its models, routes and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inopsio import hookimpl
from inopsio_sample.controllers import NoteController
from inopsio_sample.models import Note, NoteTag

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


@hookimpl
async def on_tenant_created(tenant: Any, session: Any) -> None:
    from inopsio_sample.models import Note

    session.add(Note(tenant_id=tenant.id, title="Welcome", body=f"First note of {tenant.name}"))
