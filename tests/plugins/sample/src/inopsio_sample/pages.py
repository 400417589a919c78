"""The sample plugin's pages: a list inside the shell, a dashboard card, a menu entry."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from sqlalchemy import func, select

from inopsio.deps import DbSession
from inopsio.web import fragment, page
from inopsio_sample.models import Note


@get("/sample/notes", opt={"permission": "sample.notes.read"}, include_in_schema=False)
async def notes_page(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    notes = (await db_session.scalars(select(Note).order_by(Note.title).limit(100))).all()
    return await page(request, "sample/notes.html", {"notes": notes})


@get("/sample/cards/notes", opt={"permission": "sample.notes.read"}, include_in_schema=False)
async def notes_card(request: Request[Any, Any, Any], db_session: DbSession) -> Response[str]:
    count = await db_session.scalar(select(func.count()).select_from(Note))
    return await fragment(request, "sample/card.html", {"count": count or 0})
