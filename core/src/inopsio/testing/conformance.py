"""Conformance checks every plugin must pass, whoever wrote it.

Event visibility: every event type of every installed plugin declares who may read it (a permission
that plugin or the kernel declares, or ``ANY_MEMBER``), so the activity feed, the WebSocket, webhooks
and workflow triggers can filter it (:func:`test_every_event_type_declares_who_may_read_it`, run once
per installed plugin, and :func:`test_the_catalog_says_who_may_read_each_event_type` on the app).

Tenant isolation: for every tenant-owned table of every loaded plugin, prove through
the application's database role that tenant B can neither read, update, delete nor insert tenant A's
rows (nor move its own rows into A), and that a transaction without a tenant sees nothing.

The statements are plain SQL on the tables, never the ORM: the ORM adds its own tenant filter, and
this check must catch a table whose row-level security is missing even when that filter is there.

Third-party plugins get them by adding lines to a test module::

    from inopsio.testing.conformance import test_every_event_type_declares_who_may_read_it  # noqa: F401
    from inopsio.testing.conformance import test_tenant_isolation  # noqa: F401

A model can supply values for its columns (e.g. to satisfy a check constraint) with a classmethod
``__inopsio_sample__(cls) -> dict``; other columns get values made from their types.
"""

from __future__ import annotations

import datetime as dt
import decimal
import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from inopsio.db.base import TENANT_SCOPED, Base, new_id


def discover_tenant_tables() -> list[str]:
    """Tenant-owned tables of the kernel and the plugins ``INOPSIO_PLUGINS`` selects."""
    from inopsio.app import collect_models
    from inopsio.plugins import build_plugin_manager
    from inopsio.settings import load_settings

    settings = load_settings()
    collect_models(build_plugin_manager(settings.plugins))
    return sorted(t.name for t in Base.metadata.sorted_tables if t.info.get(TENANT_SCOPED))


def _model_sample(table: Table) -> dict[str, Any]:
    for mapper in Base.registry.mappers:
        if mapper.local_table is table:
            sample = getattr(mapper.class_, "__inopsio_sample__", None)
            if sample is not None:
                return dict(sample())
    return {}


def _value_for(column: sa.Column[Any]) -> Any:
    type_ = column.type
    try:
        python_type = type_.python_type
    except NotImplementedError:
        python_type = None
    if isinstance(type_, sa.Enum) and type_.enums:
        return type_.enums[0]
    if python_type is str:
        length = getattr(type_, "length", None) or 24
        return ("c" + secrets.token_hex(12))[: max(1, min(length, 24))]
    if python_type is bool:
        return False
    if python_type is int:
        return 1
    if python_type is float:
        return 1.0
    if python_type is decimal.Decimal:
        return decimal.Decimal("1")
    if python_type is uuid.UUID:
        return new_id()
    if python_type is dt.datetime:
        return dt.datetime.now(dt.UTC)
    if python_type is dt.date:
        return dt.date.today()
    if python_type is dt.time:
        return dt.time(12, 0)
    if python_type is dt.timedelta:
        return dt.timedelta(seconds=1)
    if python_type is dict:
        return {}
    if python_type is list:
        return []
    if python_type is bytes:
        return b"x"
    raise TypeError(
        f"cannot make a sample value for {column.table.name}.{column.name} ({type_}); "
        "give the model an __inopsio_sample__ classmethod"
    )


async def _insert_row(connection: Any, table: Table, tenant_id: uuid.UUID) -> dict[str, Any]:
    """Insert a row of ``table`` for ``tenant_id`` (parents first); return its column values."""
    values: dict[str, Any] = {"tenant_id": tenant_id} if "tenant_id" in table.c else {}
    for constraint in table.foreign_key_constraints:
        referred = constraint.referred_table
        local_columns = [c for c in constraint.column_keys if c != "tenant_id"]
        if referred.name == "tenants" or not local_columns:
            continue
        if all(table.c[c].nullable for c in local_columns):
            continue
        parent = await _insert_row(connection, referred, tenant_id)
        for local, remote in zip(constraint.column_keys, [e.column.name for e in constraint.elements], strict=True):
            values[local] = parent[remote]
    sample = _model_sample(table)
    for column in table.columns:
        if column.name in values:
            continue
        if column.name in sample:
            values[column.name] = sample[column.name]
        elif isinstance(column.default, sa.ColumnDefault) and column.default.is_scalar:
            values[column.name] = column.default.arg
        elif isinstance(column.default, sa.ColumnDefault) and column.default.is_callable:
            values[column.name] = column.default.arg(None)
        elif column.server_default is not None or column.nullable or column.autoincrement is True:
            continue
        else:
            values[column.name] = _value_for(column)
    row = (await connection.execute(insert(table).values(**values).returning(*table.columns))).mappings().one()
    return dict(row)


def _pk_match(table: Table, row: dict[str, Any]) -> Any:
    return sa.and_(*(column == row[column.name] for column in table.primary_key.columns))


def _is_refusal(exc: DBAPIError) -> bool:
    """Refused by row-level security, or by the table's grants (e.g. an append-only audit log)."""
    message = str(exc.orig)
    return "row-level security" in message or "permission denied" in message


async def _probe(db: Any, tenant_id: uuid.UUID | None, statement: Any) -> Any:
    """Run one statement in its own transaction; return its result, or the database's refusal."""
    try:
        async with db.transaction(tenant_id) as conn:
            result = await conn.execute(statement)
            return result.rowcount if not result.returns_rows else result.all()
    except DBAPIError as exc:
        return exc


async def check_isolation(db: Any, table_name: str, tenant_a: uuid.UUID, tenant_b: uuid.UUID) -> list[str]:
    """Every way tenant B could reach tenant A's row of ``table_name``; returns what got through."""
    table = Base.metadata.tables[table_name]
    problems: list[str] = []
    try:
        async with db.transaction(tenant_a) as conn:
            row_a = await _insert_row(conn, table, tenant_a)
        async with db.transaction(tenant_b) as conn:
            row_b = await _insert_row(conn, table, tenant_b)
    except DBAPIError as exc:
        # RLS enabled without a tenant policy denies everything, the tenant's own rows included.
        return [f"a tenant cannot write its own rows (is the tenant policy missing?): {exc.orig}"]

    reads = {
        "B can read A's row by its key": select(func.count()).select_from(table).where(_pk_match(table, row_a)),
        "B can read rows with A's tenant_id": select(func.count())
        .select_from(table)
        .where(table.c.tenant_id == tenant_a),
        "B's unfiltered read returns other tenants' rows": select(func.count())
        .select_from(table)
        .where(table.c.tenant_id != tenant_b),
    }
    for description, statement in reads.items():
        result = await _probe(db, tenant_b, statement)
        if isinstance(result, DBAPIError) or result[0][0]:
            problems.append(description if not isinstance(result, DBAPIError) else f"{description}: {result.orig}")

    writes = {
        "B can update A's row": update(table).where(_pk_match(table, row_a)).values(tenant_id=tenant_a),
        "B can delete A's row": sa.delete(table).where(_pk_match(table, row_a)),
    }
    for description, write in writes.items():
        result = await _probe(db, tenant_b, write)
        if isinstance(result, DBAPIError):
            if not _is_refusal(result):
                problems.append(f"{description}: failed for another reason ({result.orig})")
        elif result:
            problems.append(description)

    # Generated columns take no value on insert: copy only the columns an INSERT may name.
    copy = {name: value for name, value in row_a.items() if table.c[name].computed is None}
    for column in table.primary_key.columns:
        if column.name != "tenant_id" and isinstance(copy[column.name], uuid.UUID):
            copy[column.name] = new_id()
    intrusions = {
        "B can insert a row into A": insert(table).values(**copy),
        "B can move its own row into A": update(table).where(_pk_match(table, row_b)).values(tenant_id=tenant_a),
    }
    for description, intrusion in intrusions.items():
        result = await _probe(db, tenant_b, intrusion)
        if not isinstance(result, DBAPIError):
            if result:
                problems.append(description)
        elif not _is_refusal(result):
            problems.append(f"{description}: refused, but not by row-level security ({result.orig})")

    result = await _probe(db, None, select(func.count()).select_from(table))
    if isinstance(result, DBAPIError) or result[0][0]:
        problems.append("a transaction without a tenant can read rows")
    async with db.transaction(tenant_a) as conn:
        still = (await conn.execute(select(table).where(_pk_match(table, row_a)))).mappings().one_or_none()
        if still is None or dict(still) != row_a:
            problems.append("A's row changed or vanished")
    return problems


def loaded_tenant_tables(kernel: Any) -> set[str]:
    """Tenant-owned tables of the plugins the running app actually loaded."""
    from inopsio.app import collect_models

    tables = (getattr(model, "__table__", None) for _, model in collect_models(kernel.plugins))
    return {t.name for t in tables if t is not None and t.info.get(TENANT_SCOPED)}


async def test_tenant_isolation(kernel: Any, make_tenant: Any, inopsio_tenant_table: str) -> None:
    """Tenant B can neither read, update, delete nor insert tenant A's rows of this table."""
    import pytest

    if inopsio_tenant_table not in loaded_tenant_tables(kernel):
        pytest.skip(f"{inopsio_tenant_table} belongs to a plugin this test app does not load")
    async with kernel.db.engine.connect() as connection:
        role = (
            await connection.execute(text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"))
        ).scalar()
    assert role is False, "the conformance check must run as the application role"
    tenant_a, tenant_b = await make_tenant(), await make_tenant()
    problems = await check_isolation(kernel.db, inopsio_tenant_table, tenant_a.id, tenant_b.id)
    assert not problems, f"{inopsio_tenant_table}: " + "; ".join(problems)


def test_every_loaded_tenant_table_is_checked(kernel: Any) -> None:
    """No tenant-owned table of a loaded plugin escapes the isolation check above."""
    missing = loaded_tenant_tables(kernel) - set(discover_tenant_tables())
    assert not missing, f"tenant-owned tables not covered by the isolation check: {sorted(missing)}"


def event_type_problems(registry: Any) -> list[str]:
    """What is wrong with who may read the event types the plugins of ``registry`` declare.

    Walks the ``register_event_types`` hook itself, without the start-up checks (which stop at the
    first fault), so every fault of every type is reported, each naming its plugin.
    """
    from inopsio.app import collect_permissions
    from inopsio.events.schemas import ANY_MEMBER, EventType
    from inopsio.plugins import PluginError

    try:
        declared = {permission.name for permission in collect_permissions(registry)}
        registered = registry.collect("register_event_types")
    except PluginError as exc:  # a type the plugin could not even build, e.g. without a permission
        return [str(exc)]
    problems = []
    for plugin, item in registered:
        if not isinstance(item, EventType):
            problems.append(f"plugin {plugin!r} registered {item!r}, not an EventType")
        elif item.permission != ANY_MEMBER and item.permission not in declared:
            problems.append(
                f"plugin {plugin!r}: event type {item.name!r} is read with {item.permission!r}, "
                "which no loaded plugin declares"
            )
        elif item.visible is not None and not callable(item.visible):
            problems.append(f"plugin {plugin!r}: event type {item.name!r} has a row-level rule that is no function")
    return problems


def test_every_event_type_declares_who_may_read_it(inopsio_installed_plugin: str) -> None:
    """Each event type of this installed plugin names a declared permission (or ANY_MEMBER) to read it."""
    from inopsio.plugins import KERNEL, build_plugin_manager

    # The plugin alone with the kernel: a plugin may rely on no other plugin's permissions.
    registry = build_plugin_manager([] if inopsio_installed_plugin == KERNEL else [inopsio_installed_plugin])
    problems = event_type_problems(registry)
    assert not problems, "; ".join(problems)


async def test_the_catalog_says_who_may_read_each_event_type(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    """``GET /api/v1/events/catalog`` of the running app gives every type a declared permission."""
    from inopsio.events.schemas import ANY_MEMBER

    tenant = await make_tenant()
    response = await client.get("/api/v1/events/catalog", headers=await sign_in(tenant, "viewer"))
    assert response.status_code == 200, response.text
    catalog = response.json()
    assert {entry["type"] for entry in catalog} == set(kernel.events.types)
    declared = set(kernel.identity.authorizer.permissions) | {ANY_MEMBER}
    undeclared = {
        entry["type"]: entry.get("permission") for entry in catalog if entry.get("permission") not in declared
    }
    assert not undeclared, f"event types without a declared read permission: {undeclared}"
