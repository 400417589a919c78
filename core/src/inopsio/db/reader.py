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

Each statement shape is also a server-side prepared statement on every connection that ran it: the
first read of a shape on a connection sends ``PREPARE inopsio_r<n> AS <select>`` in the same message,
later ones ``EXECUTE inopsio_r<n>(<literals>)``, and the tenant setting is a prepared statement of its
own. PostgreSQL then parses and plans neither again: about a third of the server's work per read.

Use it for reads that need one statement (a row by id, a page of a list, a count). Several reads
that must see one snapshot, and every write, belong in :meth:`Database.session`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
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

#: A read connection is replaced after about this many seconds (psycopg_pool's default).
MAX_LIFETIME = 3600.0
#: An idle read connection beyond the first is closed after this many seconds unused.
MAX_IDLE = 600.0
#: Connections being closed in the background (a reference, so the tasks are not collected early).
_closing: set[asyncio.Task[None]] = set()

#: Prepared statements a read connection keeps at most before it drops them all and starts again.
MAX_PREPARED = 2 * CACHE_SIZE

#: ``%(name)s`` placeholders of psycopg's pyformat style, and ``%%`` (a literal ``%``) to step over.
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")
#: Prepared statement names, unique in the process (a connection belongs to one process).
_statement_numbers = itertools.count(1)
#: Prepared on every read connection when it opens: the tenant (and user) setting of a read.
_SET_TENANT = "inopsio_set_tenant"
_SET_TENANT_USER = "inopsio_set_tenant_user"
_SET_USER = "inopsio_set_user"


class _Compiled:
    """One statement shape, compiled; its result processors once the first result named its column types."""

    __slots__ = (
        "bind_processors",
        "compiled",
        "execute_sql",
        "expands",
        "name",
        "prepare_sql",
        "resolved",
        "result_processors",
        "result_types",
    )

    def __init__(
        self,
        compiled: SQLCompiler,
        expands: bool,
        bind_processors: dict[str, Callable[[Any], Any]],
        result_types: tuple[TypeEngine[Any], ...],
        cacheable: bool = True,
    ) -> None:
        self.compiled = compiled
        self.expands = expands  # "IN" lists and other parameters rendered per execution
        self.bind_processors = bind_processors
        self.result_types = result_types
        #: ``None``: rows come as psycopg made them (known once ``resolved``, at the first result).
        self.result_processors: tuple[Callable[[Any], Any] | None, ...] | None = None
        self.resolved = False
        #: The server-side prepared statement's name (``None``: this shape is sent as it is).
        self.name: str | None = None
        #: ``PREPARE <name> AS <the select, $n placeholders>; `` and ``EXECUTE <name>(%(param)s, ...)``.
        self.prepare_sql = ""
        self.execute_sql = ""
        # Prepared once per connection only what is read again: not a shape whose SQL changes per
        # execution ("IN" lists), nor one SQLAlchemy cannot cache (compiled anew on every read).
        if cacheable and not expands:
            self._prepared_forms(compiled.string)

    def _prepared_forms(self, sql: str) -> None:
        order: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # "%%": a literal percent sign, left for psycopg to unescape
                return match.group(0)
            return f"${order.setdefault(name, len(order) + 1)}"

        positional = _PLACEHOLDER.sub(number, sql)
        self.name = f"inopsio_r{next(_statement_numbers)}"
        self.prepare_sql = f"PREPARE {self.name} AS {positional}; "
        arguments = ", ".join(f"%({name})s" for name in order)
        self.execute_sql = f"EXECUTE {self.name}({arguments})" if arguments else f"EXECUTE {self.name}"

    def unprepared(self) -> None:
        """PostgreSQL would not prepare this shape: it is sent as it is from now on."""
        self.name = None

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
            cacheable=key is not None,
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


_TENANT_PARAM = "_inopsio_tenant_id"
_USER_PARAM = "_inopsio_user_id"
_PRELUDES = {
    (True, True): f"EXECUTE {_SET_TENANT_USER}(%({_TENANT_PARAM})s, %({_USER_PARAM})s); ",
    (True, False): f"EXECUTE {_SET_TENANT}(%({_TENANT_PARAM})s); ",
    (False, True): f"EXECUTE {_SET_USER}(%({_USER_PARAM})s); ",
    (False, False): "",
}


def _prelude(tenant_id: UUID | None, user_id: UUID | None, params: dict[str, Any], settings: str = "") -> str:
    """The statements that scope a read; their values go into ``params``. The text is the same for
    every tenant, so psycopg parses each message shape for its placeholders once."""
    if tenant_id is not None:
        params[_TENANT_PARAM] = str(tenant_id)
    if user_id is not None:
        params[_USER_PARAM] = str(user_id)
    return settings + _PRELUDES[tenant_id is not None, user_id is not None]


async def _prepare_setters(connection: AsyncConnection[Any]) -> None:
    """The pool's ``configure``: the settings every read makes, prepared once per connection."""
    await connection.execute(
        f"PREPARE {_SET_TENANT}(text) AS SELECT set_config('{TENANT_SETTING}', $1, true); "
        f"PREPARE {_SET_TENANT_USER}(text, text) AS "
        f"SELECT set_config('{TENANT_SETTING}', $1, true), set_config('{USER_SETTING}', $2, true); "
        f"PREPARE {_SET_USER}(text) AS SELECT set_config('{USER_SETTING}', $1, true)"
    )
    connection._inopsio_prepared = set()  # type: ignore[attr-defined]


class ReadPool:
    """The process's connections for one-round-trip reads (autocommit, client-side binding).

    Its own small pool rather than ``psycopg_pool``: a read holds its connection for one round trip,
    so under load most reads find every connection busy for a moment, and psycopg_pool's waiting
    (a condition, a lock, a statistics update and log calls per turn) cost about 50 µs of CPU per read
    in a 2-CPU measurement, a quarter of the read. Here a waiting read is handed the next returned
    connection through a future. Connections open on demand up to ``size``, are replaced after
    :data:`MAX_LIFETIME` and closed after :data:`MAX_IDLE` unused, and one found broken is dropped
    (the read is retried once on another: a read is safe to repeat). Closed by
    :meth:`Database.dispose`.
    """

    def __init__(self, conninfo: str, size: int, *, timeout: float = 30.0) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self.compile = StatementCompiler()
        #: Idle connections with the time they came back (the newest on the right: used first).
        self._idle: collections.deque[tuple[AsyncConnection[Any], float]] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[AsyncConnection[Any] | None]] = collections.deque()
        self._count = 0  # connections open or opening, idle or in use
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._count

    async def _acquire(self) -> AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            if self._closed:
                raise psycopg.OperationalError("the read pool is closed")
            idle = self._idle
            if idle:
                now = loop.time()
                # One stale connection at a time leaves from the old end, so a quieter process shrinks.
                if len(idle) > 1 and now - idle[0][1] > MAX_IDLE:
                    self._drop(idle.popleft()[0])
                connection = idle.pop()[0]
                if not (connection.closed or connection.broken):
                    return connection
                self._drop(connection)
                continue
            if self._count < self.size:
                self._count += 1
                try:
                    return await self._connect(max(0.1, deadline - loop.time()))
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
            waiter: asyncio.Future[AsyncConnection[Any] | None] = loop.create_future()
            self._waiting.append(waiter)
            try:
                got = await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise psycopg.OperationalError(
                    f"no database connection for a read within {self.timeout:g} s ({self.size} in use)"
                ) from None
            except BaseException:
                handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if handed is not None:
                    self._release(handed)  # handed over just as this read gave up
                elif not waiter.done():
                    with contextlib.suppress(ValueError):
                        self._waiting.remove(waiter)
                raise
            if got is not None:
                return got
            # ``None``: a connection was dropped, so there is room to open one; go round again.

    async def _connect(self, seconds: float) -> AsyncConnection[Any]:
        connection = await AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=max(1, int(seconds)))
        try:
            await _prepare_setters(connection)
        except BaseException:
            await connection.close()
            raise
        lifetime = MAX_LIFETIME * (1 - 0.1 * random.random())  # noqa: S311 # spread, so they are not renewed all at once
        connection._inopsio_expires = asyncio.get_running_loop().time() + lifetime  # type: ignore[attr-defined]
        return connection

    def _release(self, connection: AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._closed or connection.closed or connection.broken or now > connection._inopsio_expires:  # type: ignore[attr-defined]
            self._drop(connection)
            return
        if connection.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._drop(connection)  # a read never leaves a transaction open; one that did is not reused
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append((connection, now))

    def _drop(self, connection: AsyncConnection[Any]) -> None:
        self._count -= 1
        if not connection.closed:
            task = asyncio.get_running_loop().create_task(connection.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        self._wake()

    def _wake(self) -> None:
        """Room for one more connection: the first waiting read opens it."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

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
        prelude = _prelude(tenant_id, user_id, params, settings)
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                description, rows = await self._run(connection, prelude, sql, params, entry)
                break
            except psycopg.OperationalError:
                # The connection died under us (the server restarted, the network dropped it): once
                # more on another connection, as a read is safe to repeat.
                if attempt == 2 or not connection.broken:
                    raise
            finally:
                self._release(connection)
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

    @staticmethod
    async def _run(
        connection: AsyncConnection[Any],
        prelude: str,
        sql: str,
        params: dict[str, Any],
        entry: _Compiled,
        *,
        again: bool = True,
    ) -> tuple[Any, list[Any]]:
        # One cursor per connection, kept with it: a cursor is cheap to reuse, not to make.
        cursor: AsyncClientCursor[tuple[Any, ...]] | None = getattr(connection, "_inopsio_cursor", None)
        if cursor is None or cursor.closed:
            cursor = AsyncClientCursor(connection)
            connection._inopsio_cursor = cursor  # type: ignore[attr-defined]
        prepared: set[str] = connection._inopsio_prepared  # type: ignore[attr-defined]
        if len(prepared) >= MAX_PREPARED:
            # Shapes dropped from the compile cache leave their statements behind: start afresh.
            await cursor.execute("DEALLOCATE ALL")
            await _prepare_setters(connection)
            prepared = connection._inopsio_prepared  # type: ignore[attr-defined]
        name = entry.name
        if name is None:
            body = sql
        elif name in prepared:
            body = entry.execute_sql
        else:
            body = entry.prepare_sql + entry.execute_sql
        try:
            # Always with a mapping, even empty: psycopg then reads ``%%`` in the SQL as ``%``.
            await cursor.execute(prelude + body, params)
        except psycopg.errors.InvalidSqlStatementName:
            if not again:
                raise
            # The connection's prepared statements are gone (``DEALLOCATE ALL`` or ``DISCARD ALL``
            # by someone, or just one of them): start afresh with none.
            await cursor.execute("DEALLOCATE ALL")
            await _prepare_setters(connection)
            return await ReadPool._run(connection, prelude, sql, params, entry, again=False)
        except psycopg.errors.FeatureNotSupported as error:
            if not again or name is None or "cached plan must not change result type" not in str(error):
                raise
            # A migration changed the columns under a prepared statement: prepare it anew.
            await cursor.execute(f"DEALLOCATE {name}")
            prepared.discard(name)
            return await ReadPool._run(connection, prelude, sql, params, entry, again=False)
        except psycopg.errors.DuplicatePreparedStatement:
            # Prepared by a message that failed further on (a PREPARE is not undone with it).
            if not again or name is None:
                raise
            prepared.add(name)
            return await ReadPool._run(connection, prelude, sql, params, entry, again=False)
        except psycopg.OperationalError:
            raise  # the connection, a timeout or a cancel: nothing to learn from repeating it here
        except psycopg.Error:
            if name is None or name in prepared:
                raise
            # The first PREPARE of this shape failed: the same read as it is tells whether the
            # statement is wrong (its error is raised) or only cannot be prepared (sent as it is from now on).
            await cursor.execute(prelude + sql, params)
            entry.unprepared()
        else:
            if name is not None:
                prepared.add(name)
        while cursor.nextset():
            pass
        return cursor.description, await cursor.fetchall()

    async def close(self) -> None:
        """Close the idle connections now and the busy ones as they come back."""
        self._closed = True
        while self._idle:
            connection = self._idle.pop()[0]
            self._count -= 1
            await connection.close()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)


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
