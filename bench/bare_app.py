"""The baseline of the kernel-read benchmark: the same row as the full stack, with no framework at all.

A raw ASGI callable and a psycopg ``AsyncConnectionPool``: parse the path by hand, run one autocommit
``SELECT`` by ``(tenant_id, id)`` as the table owner (no tenant resolution, no RLS transaction, no
quota counting), encode the row with msgspec. It answers
``GET /notes/{tenant_id}/{note_id}``; the benchmark's wrk script sends the full stack's path and
headers to the full stack and this path to the bare app.

Run by ``bench/run.py`` under uvicorn with ``BENCH_DATABASE_URL`` set (owner URL of the bench database).
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

QUERY = "SELECT id, title, body FROM sample_notes WHERE tenant_id = %s AND id = %s"
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "10"))
PREFIX = "/notes/"


class NoteOut(msgspec.Struct):
    """Same fields as the sample plugin's ``NoteOut``, so both servers send the same body."""

    id: UUID
    title: str
    body: str


_encoder = msgspec.json.Encoder()
_pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None


async def _configure(connection: AsyncConnection[Any]) -> None:
    # Autocommit: one round trip per read, the cheapest way to get a row out of PostgreSQL.
    await connection.set_autocommit(True)


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # prepare_threshold as in the kernel's engine, so both sides use prepared statements.
            _pool = AsyncConnectionPool(
                os.environ["BENCH_DATABASE_URL"],
                min_size=POOL_SIZE,
                max_size=POOL_SIZE,
                kwargs={"prepare_threshold": 3},
                configure=_configure,
                open=False,
            )
            await _pool.open(wait=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /notes/{tenant_id}/{note_id}`` -> the note as JSON, or 404."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    if scope["type"] != "http" or not path.startswith(PREFIX):
        await _respond(send, 404, b'{"status":404}')
        return
    try:
        tenant_id, note_id = (UUID(part) for part in path[len(PREFIX) :].split("/", 1))
    except ValueError:
        await _respond(send, 404, b'{"status":404}')
        return
    assert _pool is not None
    async with _pool.connection() as connection:
        cursor = await connection.execute(QUERY, (tenant_id, note_id))
        row = await cursor.fetchone()
    if row is None:
        await _respond(send, 404, b'{"status":404}')
        return
    await _respond(send, 200, _encoder.encode(NoteOut(*row)))
