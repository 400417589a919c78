"""``/api/v1/sample/notes``: create, read, list and delete the current tenant's notes."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import bindparam, select

from inopsio.deps import CurrentTenant, DbReader, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio_sample.models import Note

log = logging.getLogger("inopsio_sample")


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    body: Annotated[str, msgspec.Meta(max_length=100_000)] = ""


class NoteCreated(msgspec.Struct):
    """Data of the ``sample.note.created`` event."""

    note_id: UUID
    title: str


class NoteOut(msgspec.Struct):
    id: UUID
    title: str
    body: str


def _out(note: Note) -> NoteOut:
    return NoteOut(id=note.id, title=note.title, body=note.body)


_notes = Note.__table__.c
#: Built once: each call only fills the placeholder.
NOTE_BY_ID = select(_notes.id, _notes.title, _notes.body).where(_notes.id == bindparam("note_id"))


async def _read_note(db_reader: DbReader, note_id: UUID) -> NoteOut:
    # A hot read: one statement, so the kernel's one-round-trip reader (row-level security still
    # scopes it to the request's tenant).
    row = await db_reader.first(NOTE_BY_ID, {"note_id": note_id})
    if row is None:
        raise Problem(404, "not-found", "No such note.")
    return NoteOut(id=row.id, title=row.title, body=row.body)


@get("/api/v1/sample/public-notes/{note_id:uuid}", opt={"public": True}, tags=["sample"])
async def get_public_note(db_reader: DbReader, note_id: FromPath[UUID]) -> NoteOut:
    """The same read without authentication: the benchmarks compare the two."""
    return await _read_note(db_reader, note_id)


class NoteCountIn(msgspec.Struct, forbid_unknown_fields=True):
    steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    #: A Redis list the job waits on halfway (tests read the progress of a running job).
    hold: str | None = None


class JobQueued(msgspec.Struct):
    job_id: str


@post("/api/v1/sample/note-counts", opt={"permission": "sample.notes.read"}, tags=["sample"], status_code=202)
async def start_note_count(kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[NoteCountIn]) -> JobQueued:
    """Count the notes in a background job; follow it at ``/api/v1/jobs/{job_id}``."""
    job_id = await kernel.jobs.enqueue("sample.count_notes", tenant_id=tenant.id, steps=data.steps, hold=data.hold)
    assert job_id is not None
    log.info("queued note count %s", job_id)
    return JobQueued(job_id=job_id)


class NoteController(Controller):
    path = "/api/v1/sample/notes"
    tags = ["sample"]

    @post("/", opt={"permission": "sample.notes.write"})
    async def create_note(self, kernel: KernelDep, db_session: DbSession, data: JSONBody[NoteIn]) -> NoteOut:
        note = Note(title=data.title, body=data.body)
        db_session.add(note)
        await db_session.flush()
        await kernel.events.publish(db_session, "sample.note.created", NoteCreated(note_id=note.id, title=note.title))
        return _out(note)

    @get("/{note_id:uuid}", opt={"permission": "sample.notes.read"})
    async def get_note(self, db_reader: DbReader, note_id: FromPath[UUID]) -> NoteOut:
        return await _read_note(db_reader, note_id)

    @get("/", opt={"permission": "sample.notes.read"})
    async def list_notes(
        self, db_session: DbSession, limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20
    ) -> list[NoteOut]:
        rows = (await db_session.execute(select(Note).order_by(Note.id).limit(limit))).scalars()
        return [_out(n) for n in rows]

    @delete("/{note_id:uuid}", opt={"permission": "sample.notes.delete"})
    async def delete_note(self, db_session: DbSession, note_id: FromPath[UUID]) -> None:
        note = (await db_session.execute(select(Note).where(Note.id == note_id))).scalar_one_or_none()
        if note is None:
            raise Problem(404, "not-found", "No such note.")
        await db_session.delete(note)
