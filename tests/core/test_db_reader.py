"""One-round-trip reads (``inopsio.db.reader``): tenant scoping, parameters, and what they refuse."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Float,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    bindparam,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    type_coerce,
)

from inopsio.db.reader import StatementCompiler
from inopsio_sample.models import Note

notes = Note.__table__.c


async def add_notes(kernel: Any, tenant: Any, *titles: str) -> list[Any]:
    async with kernel.db.session(tenant.id) as session:
        rows = [Note(title=title, body=f"body of {title}") for title in titles]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


COUNT = select(func.count()).select_from(Note.__table__)


async def test_a_read_sees_its_tenants_rows_only(kernel: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    before = await kernel.db.reader(a.id).scalar(COUNT)
    (a_note,) = await add_notes(kernel, a, "alpha")
    (b_note,) = await add_notes(kernel, b, "beta")
    reader = kernel.db.reader(a.id)

    row = await reader.first(select(notes.id, notes.title, notes.body).where(notes.id == a_note))
    assert (row.id, row.title, row.body) == (a_note, "alpha", "body of alpha")
    # Tenant B's row is not there for tenant A, even asked for by id or counted.
    assert await reader.first(select(notes.id).where(notes.id == b_note)) is None
    assert await reader.scalar(COUNT) == before + 1
    assert "beta" in await kernel.db.reader(b.id).scalars(select(notes.title))
    assert "beta" not in await reader.scalars(select(notes.title))
    # No tenant: row-level security shows nothing at all.
    assert await kernel.db.reader(None).all(select(notes.id)) == []


async def test_the_tenant_setting_ends_with_the_read(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await add_notes(kernel, tenant, "one")
    size = kernel.db.reads.size
    # Every pooled connection has served a scoped read; none carries the tenant afterwards.
    scoped = await asyncio.gather(*(kernel.db.reader(tenant.id).scalar(COUNT) for _ in range(size * 2)))
    assert min(scoped) >= 1
    setting = select(func.current_setting("inopsio.tenant_id", True))
    unscoped = await asyncio.gather(*(kernel.db.reader(None).scalar(setting) for _ in range(size * 2)))
    assert set(unscoped) <= {None, ""}
    assert await asyncio.gather(*(kernel.db.reader(None).scalar(COUNT) for _ in range(size * 2))) == [0] * size * 2


async def test_lists_percent_signs_and_shapes_cached(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    ids = await add_notes(kernel, tenant, "50% off", "plain", "it's \\ quoted")
    reader = kernel.db.reader(tenant.id)

    # IN lists expand per call, whatever their length, with one compiled shape.
    for chosen in (ids[:1], ids[:2], ids):
        found = await reader.scalars(select(notes.id).where(notes.id.in_(chosen)))
        assert sorted(found) == sorted(chosen)
    assert await reader.scalars(select(notes.id).where(notes.id.in_([]))) == []
    # A literal "%" in SQL and in a LIKE pattern.
    assert await reader.scalars(select(notes.title).where(notes.title.like("50\\%%"))) == ["50% off"]
    assert await reader.scalar(select(literal(7) % 4)) == 3
    assert await reader.scalar(select(text("'100%'"))) == "100%"
    assert await reader.scalars(select(notes.title).where(notes.title == "it's \\ quoted")) == ["it's \\ quoted"]


class Shouting(TypeDecorator[str]):
    """Stored lower-case, read upper-case: both processors must run."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.lower()

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()


async def test_type_processors_apply_both_ways(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await add_notes(kernel, tenant, "quiet")
    reader = kernel.db.reader(tenant.id)
    shouted = cast(notes.title, Shouting())
    assert await reader.scalars(select(shouted).where(notes.title == cast("QUIET", Shouting()))) == ["QUIET"]


async def test_numbers_come_back_as_their_column_types_say(kernel: Any) -> None:
    """A Numeric column's processor depends on what PostgreSQL sent (numeric or float8)."""
    reader = kernel.db.reader(None)
    row = await reader.first(
        select(
            cast(literal("12.50"), Numeric(10, 2)).label("money"),
            cast(literal(0.25), Float).label("ratio"),
            cast(literal(0.5), Numeric(10, 2)).label("from_float"),
        )
    )
    assert (row.money, row.ratio) == (Decimal("12.50"), 0.25)
    assert isinstance(row.money, Decimal)
    assert isinstance(row.ratio, float)
    # A float8 result read as Numeric becomes a Decimal, as in a session.
    coerced = await reader.scalar(select(type_coerce(cast(literal(0.5), Float), Numeric(10, 2))))
    assert coerced == Decimal("0.5")
    assert isinstance(coerced, Decimal)
    assert row.from_float == Decimal("0.50")
    # Twice through the same compiled shape, and with no rows at all.
    assert (await reader.first(select(cast(literal("1.25"), Numeric(10, 2))))) == (Decimal("1.25"),)
    assert await reader.all(select(cast(literal("1.25"), Numeric(10, 2))).where(literal(1) == 0)) == []


async def test_settings_hold_for_their_read_only(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await add_notes(kernel, tenant, "set")
    plain = kernel.db.reader(tenant.id)
    tuned = plain.with_settings({"max_parallel_workers_per_gather": "0", "work_mem": "8MB"})
    setting = select(func.current_setting("max_parallel_workers_per_gather"), func.current_setting("work_mem"))
    default = tuple(await kernel.db.reader(None).first(setting))
    assert default != ("0", "8MB")
    size = kernel.db.reads.size
    assert {tuple(row) for row in await asyncio.gather(*(tuned.first(setting) for _ in range(size * 2)))} == {
        ("0", "8MB")
    }
    # Still scoped to the tenant, and no pooled connection keeps the settings afterwards.
    assert await tuned.scalar(COUNT) == await plain.scalar(COUNT) >= 1
    assert await kernel.db.reader(None).with_settings({"work_mem": "8MB"}).scalar(COUNT) == 0
    after = await asyncio.gather(*(plain.first(setting) for _ in range(size * 2)))
    assert {tuple(row) for row in after} == {default}


@pytest.mark.parametrize(
    "settings",
    [{"work_mem": "1'; DROP TABLE sample_notes; --"}, {"work_mem; DROP": "1"}, {"work_mem": "8 MB"}],
)
def test_settings_are_plain_words(kernel: Any, settings: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="plain setting"):
        kernel.db.reader(None).with_settings(settings)


async def test_only_selects_are_taken(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    with pytest.raises(TypeError, match="select"):
        await kernel.db.reader(tenant.id).all(insert(Note.__table__).values(title="x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="select"):
        await kernel.db.reader(tenant.id).all(text("DELETE FROM sample_notes"))  # type: ignore[arg-type]


async def test_one_shape_is_compiled_once() -> None:
    compile_ = StatementCompiler()
    first = compile_(select(notes.id).where(notes.id == "a"))
    second = compile_(select(notes.id).where(notes.id == "b"))
    assert first[2] is second[2]
    assert (first[0], list(first[1].values()), list(second[1].values())) == (second[0], ["a"], ["b"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=40))
async def test_any_text_parameter_arrives_as_itself(kernel: Any, value: str) -> None:
    """Client-side binding: quotes, backslashes, semicolons and placeholders are data, never SQL."""
    assert await kernel.db.reader(None).scalar(select(literal(value, String))) == value


# -- prepared statements and the read pool ----------------------------------------------------

NOTE_TITLE = select(notes.title).where(notes.id == bindparam("note_id"))
PREPARED = select(text("name, statement FROM pg_prepared_statements"))


async def test_a_shape_is_prepared_once_per_connection(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    (note,) = await add_notes(kernel, tenant, "prepared")
    reader = kernel.db.reader(tenant.id)
    size = kernel.db.reads.size
    titles = await asyncio.gather(*(reader.scalar(NOTE_TITLE, {"note_id": note}) for _ in range(size * 3)))
    assert titles == ["prepared"] * size * 3
    # Every read connection that ran the shape holds it (and the tenant setting) as prepared statements.
    statements = await asyncio.gather(*(kernel.db.reader(None).all(PREPARED) for _ in range(size * 2)))
    texts = [{row.statement for row in rows} for rows in statements]
    assert any(any("FROM sample_notes" in sql and "$1" in sql for sql in seen) for seen in texts)
    assert all(any("set_config('inopsio.tenant_id'" in sql for sql in seen) for seen in texts)


async def test_reads_survive_their_prepared_statements_being_dropped(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    (note,) = await add_notes(kernel, tenant, "dropped")
    reader, pool = kernel.db.reader(tenant.id), kernel.db.reads
    titles = await asyncio.gather(*(reader.scalar(NOTE_TITLE, {"note_id": note}) for _ in range(pool.size * 2)))
    assert set(titles) == {"dropped"}
    assert len(pool._idle) >= 2
    # Someone deallocates everything on every idle read connection (a pooler's DISCARD ALL would too).
    held = [await pool._acquire() for _ in range(len(pool._idle))]
    for index, connection in enumerate(held):
        # All of them on some connections, only the shape's statement on others.
        names = await (await connection.execute("SELECT name FROM pg_prepared_statements")).fetchall()
        shape = [name for (name,) in names if name.startswith("inopsio_r")]
        await connection.execute("DEALLOCATE ALL" if index % 2 == 0 or not shape else f"DEALLOCATE {shape[0]}")
    for connection in held:
        pool._release(connection)
    for _ in range(pool.size * 2):
        assert await reader.scalar(NOTE_TITLE, {"note_id": note}) == "dropped"
    # A read that fails after its PREPARE ran (PostgreSQL keeps the statement though the message
    # failed) gives its own error every time and confuses no later read.
    as_number = select(cast(notes.title, Integer)).where(notes.id == bindparam("note_id"))
    for _ in range(pool.size * 2):
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="invalid input syntax for type integer"):
            await reader.scalar(as_number, {"note_id": note})
    assert await reader.scalar(NOTE_TITLE, {"note_id": note}) == "dropped"


async def test_a_broken_read_connection_is_replaced_and_the_read_repeated(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    (note,) = await add_notes(kernel, tenant, "alive")
    reader, pool = kernel.db.reader(tenant.id), kernel.db.reads
    await asyncio.gather(*(reader.scalar(NOTE_TITLE, {"note_id": note}) for _ in range(pool.size)))
    pids = [connection.info.backend_pid for connection, _ in pool._idle]
    assert pids
    # The server ends every idle read connection (a restart or a network drop looks the same).
    with kernel.db.owner_engine().begin() as owner:
        for pid in pids:
            owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    titles = await asyncio.gather(*(reader.scalar(NOTE_TITLE, {"note_id": note}) for _ in range(pool.size * 2)))
    assert titles == ["alive"] * pool.size * 2
    assert pool.open_connections <= pool.size


async def test_reads_beyond_the_pool_wait_their_turn_and_time_out(kernel: Any, make_tenant: Any) -> None:
    from inopsio.db.reader import ReadPool, TenantReader

    tenant = await make_tenant()
    (note,) = await add_notes(kernel, tenant, "turns")
    pool = ReadPool(kernel.db.reads.conninfo, 2, timeout=0.5)
    reader = TenantReader(pool, tenant.id)
    try:
        titles = await asyncio.gather(*(reader.scalar(NOTE_TITLE, {"note_id": note}) for _ in range(40)))
        assert titles == ["turns"] * 40
        assert pool.open_connections == 2
        held = [await pool._acquire(), await pool._acquire()]
        with pytest.raises(Exception, match=r"no database connection for a read within 0\.5 s"):
            await reader.scalar(NOTE_TITLE, {"note_id": note})
        # A read that gave up leaves no trace: the next one gets the first connection handed back.
        waiting = asyncio.ensure_future(reader.scalar(NOTE_TITLE, {"note_id": note}))
        await asyncio.sleep(0.05)
        pool._release(held.pop())
        assert await waiting == "turns"
        pool._release(held.pop())
        assert pool.open_connections == 2
    finally:
        await pool.close()
    assert pool.open_connections == 0


def test_what_is_prepared_and_how() -> None:
    compile_ = StatementCompiler()
    twice = select(notes.id).where(notes.id == bindparam("x"), notes.title != bindparam("x"))
    _, _, by_id = compile_(twice, {"x": "a"})
    # One placeholder per distinct parameter, in order; the EXECUTE passes them by name.
    assert by_id.name is not None
    assert by_id.prepare_sql.startswith(f"PREPARE {by_id.name} AS SELECT")
    assert by_id.prepare_sql.count("$1") == 2
    assert "$2" not in by_id.prepare_sql
    assert "%(" not in by_id.prepare_sql
    assert by_id.execute_sql == f"EXECUTE {by_id.name}(%(x)s)"
    # A literal percent sign stays escaped for psycopg, which unescapes the whole message.
    _, _, percent = compile_(select(literal_column("'50%'")).where(notes.id == bindparam("x")), {"x": "a"})
    assert "'50%%'" in percent.prepare_sql
    # IN lists change the SQL with their length: sent as they are, never prepared.
    _, _, listed = compile_(select(notes.id).where(notes.id.in_(["a", "b"])))
    assert listed.name is None
