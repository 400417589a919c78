"""One-round-trip reads: a single ``SELECT`` scoped to a tenant, sent to PostgreSQL as one message.

PostgreSQL runs the statements of one simple-protocol message as one implicit transaction. So
``SELECT set_config('inopsio.tenant_id', '<uuid>', true); <the select>`` scopes exactly that select to
the tenant, with the same row-level security as :meth:`Database.transaction`, in one round trip and
without ``BEGIN`` or ``COMMIT``: the setting ends with the message, so a pooled connection never
carries one tenant into the next read. A session transaction costs three round trips for the same
read (``BEGIN`` with the setting, the select, ``COMMIT``), and each round trip costs more CPU than
the select itself on a busy host.

Statements are SQLAlchemy Core selects, compiled once per shape (SQLAlchemy's cache key) for the
psycopg dialect. Their parameters are bound on the client by psycopg (``ClientCursor``: quoted by
PostgreSQL's literal rules, never pasted in as text), as a simple-protocol message needs.

Use it for reads that need one statement (a row by id, a page of a list, a count). Several reads
that must see one snapshot, and every write, belong in :meth:`Database.session`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import AsyncClientCursor, AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import CompoundSelect

from inopsio.db.rls import TENANT_SETTING, USER_SETTING

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.cache_key import CacheKey
    from sqlalchemy.sql.type_api import TypeEngine

#: Compiled statement shapes kept per process.
CACHE_SIZE = 500


class _Compiled:
    """One statement shape, compiled; its result processors once the first result named its column types."""

    __slots__ = ("bind_processors", "compiled", "expands", "resolved", "result_processors", "result_types")

    def __init__(
        self,
        compiled: SQLCompiler,
        expands: bool,
        bind_processors: dict[str, Callable[[Any], Any]],
        result_types: tuple[TypeEngine[Any], ...],
    ) -> None:
        self.compiled = compiled
        self.expands = expands  # "IN" lists and other parameters rendered per execution
        self.bind_processors = bind_processors
        self.result_types = result_types
        #: ``None``: rows come as psycopg made them (known once ``resolved``, at the first result).
        self.result_processors: tuple[Callable[[Any], Any] | None, ...] | None = None
        self.resolved = False

    def processors_for(
        self, dialect: Dialect, type_codes: Sequence[int]
    ) -> tuple[Callable[[Any], Any] | None, ...] | None:
        """The columns' result processors; some types choose theirs by the column's PostgreSQL type
        (a ``Numeric`` reads ``numeric`` as psycopg returns it but converts ``float8``), which only the
        result tells, and it is the same for every execution of one shape."""
        if not self.resolved:
            types = self.result_types
            # A textual column (``select(text("..."))``) has no SQLAlchemy type: taken as it comes.
            processors = tuple(
                types[index].dialect_impl(dialect).result_processor(dialect, code) if index < len(types) else None
                for index, code in enumerate(type_codes)
            )
            self.result_processors = processors if any(p is not None for p in processors) else None
            self.resolved = True
        return self.result_processors


class StatementCompiler:
    """SQLAlchemy Core selects -> (SQL with ``%(name)s`` placeholders, parameters), cached by shape."""

    def __init__(self, dialect: Dialect | None = None, size: int = CACHE_SIZE) -> None:
        self.dialect = dialect or PGDialectAsync_psycopg()  # type: ignore[no-untyped-call]
        self.size = size
        self._cache: OrderedDict[Any, _Compiled] = OrderedDict()

    def __call__(
        self, statement: Select[Any] | CompoundSelect[Any], values: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any], _Compiled]:
        """``values`` fill the statement's ``bindparam("name")`` placeholders."""
        if not isinstance(statement, Select | CompoundSelect):
            raise TypeError("a one-round-trip read takes a SQLAlchemy select; writes belong in Database.session")
        key = statement._generate_cache_key()
        entry = self._cache.get(key.key) if key is not None else None
        if entry is None:
            entry = self._compile(statement, key)
            if key is not None:
                self._cache[key.key] = entry
                if len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        compiled = entry.compiled
        params = compiled.construct_params(values, extracted_parameters=key.bindparams if key is not None else None)
        if entry.bind_processors:
            for name, process in entry.bind_processors.items():
                if name in params:
                    params[name] = process(params[name])
        if entry.expands:
            state = compiled.construct_expanded_state(params)
            return state.statement, dict(state.parameters), entry
        return compiled.string, dict(params), entry

    def _compile(self, statement: Select[Any] | CompoundSelect[Any], key: CacheKey | None) -> _Compiled:
        dialect = self.dialect
        # With its cache key, the compiled form takes the parameters of later statements of the same shape.
        compiled = statement.compile(dialect=dialect, cache_key=key)
        assert isinstance(compiled, SQLCompiler)
        escaped = compiled.escaped_bind_names
        bind_processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                bind_processors[escaped.get(name, name)] = process
        return _Compiled(
            compiled=compiled,
            expands=bool(compiled.post_compile_params or compiled.literal_execute_params),
            bind_processors=bind_processors,
            result_types=tuple(column.type for column in statement.selected_columns),
        )


_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_.:-]*$")


def settings_prelude(settings: Mapping[str, str]) -> str:
    """``set_config`` calls for planner settings of one read (``{"max_parallel_workers_per_gather": "0"}``).

    Inlined into the message, so names and values are held to plain words (no quote can get in).
    """
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.match(name) or not _SETTING_VALUE.match(value):
            raise ValueError(f"not a plain setting: {name!r} = {value!r}")
        parts.append(f"SELECT set_config('{name}', '{value}', true); ")
    return "".join(parts)


@functools.lru_cache(maxsize=512)
def _row_type(names: tuple[str, ...]) -> type[Any]:
    """Rows are named tuples of the result's column names (``row.id``); odd names become ``_0``..."""
    return collections.namedtuple("Row", names, rename=True)


def _prelude(tenant_id: UUID | None, user_id: UUID | None, settings: str = "") -> str:
    parts = [settings]
    # str(UUID) is 36 hex digits and dashes: safe to inline.
    if tenant_id is not None:
        parts.append(f"SELECT set_config('{TENANT_SETTING}', '{UUID(str(tenant_id))}', true); ")
    if user_id is not None:
        parts.append(f"SELECT set_config('{USER_SETTING}', '{UUID(str(user_id))}', true); ")
    return "".join(parts)


class ReadPool:
    """The process's connections for one-round-trip reads (autocommit, client-side binding).

    Opened on first use, closed by :meth:`Database.dispose`.
    """

    def __init__(self, conninfo: str, size: int) -> None:
        self.conninfo = conninfo
        self.size = size
        self.compile = StatementCompiler()
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        async with self._opening:
            if self._pool is None:
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self.size,
                    kwargs={"autocommit": True},
                    open=False,
                    name="inopsio-read",
                )
                await pool.open(wait=True, timeout=30)
                self._pool = pool
            return self._pool

    async def fetch(
        self,
        tenant_id: UUID | None,
        statement: Select[Any] | CompoundSelect[Any],
        values: Mapping[str, Any] | None = None,
        *,
        user_id: UUID | None = None,
        settings: str = "",
    ) -> list[Any]:
        sql, params, entry = self.compile(statement, values)
        prelude = _prelude(tenant_id, user_id, settings)
        pool = self._pool or await self._open()
        async with pool.connection() as connection:
            # One cursor per connection, kept with it: a cursor is cheap to reuse, not to make.
            cursor: AsyncClientCursor[tuple[Any, ...]] | None = getattr(connection, "_inopsio_cursor", None)
            if cursor is None or cursor.closed:
                cursor = AsyncClientCursor(connection)
                connection._inopsio_cursor = cursor  # type: ignore[attr-defined]
            # Always with a mapping, even empty: psycopg then reads ``%%`` in the SQL as ``%``.
            await cursor.execute(prelude + sql, params)
            while cursor.nextset():
                pass
            description = cursor.description
            rows = await cursor.fetchall()
        if not rows or description is None:
            return rows
        row_type = _row_type(tuple(column.name for column in description))
        processors = entry.processors_for(self.compile.dialect, [column.type_code for column in description])
        if processors is None:
            return [row_type._make(row) for row in rows]
        return [
            row_type._make(v if process is None else process(v) for process, v in zip(processors, row, strict=True))
            for row in rows
        ]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class TenantReader:
    """One tenant's one-round-trip reads; the ``db_reader`` dependency of a request.

    ``await reader.first(select(...))``: each call is its own statement and transaction, scoped to
    the tenant by row-level security. Rows are named tuples (``row.id``, ``row.title``).
    """

    __slots__ = ("_pool", "_settings", "tenant_id", "user_id")

    def __init__(
        self, pool: ReadPool, tenant_id: UUID | None, user_id: UUID | None = None, *, settings: str = ""
    ) -> None:
        self._pool = pool
        self.tenant_id = tenant_id
        self.user_id = user_id
        self._settings = settings

    def with_settings(self, settings: Mapping[str, str]) -> TenantReader:
        """The same reads, each with these settings (``set_config(..., true)``: they end with the read).

        For planner settings a statement needs, e.g. ``{"max_parallel_workers_per_gather": "0"}`` for a
        page of a list, where starting parallel workers costs more than they save.
        """
        return TenantReader(
            self._pool, self.tenant_id, self.user_id, settings=self._settings + settings_prelude(settings)
        )

    async def all(
        self, statement: Select[Any] | CompoundSelect[Any], values: Mapping[str, Any] | None = None
    ) -> Sequence[Any]:
        """Every row. ``values`` fill ``bindparam("name")`` placeholders: a statement built once at
        import time with placeholders skips building and cache-key work on every call."""
        return await self._pool.fetch(self.tenant_id, statement, values, user_id=self.user_id, settings=self._settings)

    async def first(
        self, statement: Select[Any] | CompoundSelect[Any], values: Mapping[str, Any] | None = None
    ) -> Any | None:
        rows = await self.all(statement, values)
        return rows[0] if rows else None

    async def scalar(
        self, statement: Select[Any] | CompoundSelect[Any], values: Mapping[str, Any] | None = None
    ) -> Any | None:
        """The first column of the first row (``None`` when there is no row)."""
        row = await self.first(statement, values)
        return None if row is None else row[0]

    async def scalars(
        self, statement: Select[Any] | CompoundSelect[Any], values: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in await self.all(statement, values)]
