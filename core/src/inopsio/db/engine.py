"""Database access: the application engine, tenant-scoped transactions and the owner engine.

A tenant-scoped transaction costs no extra round trip for the tenant: the application engine runs
psycopg in autocommit mode and opens each transaction itself with one simple-protocol message,
``BEGIN; SELECT set_config('inopsio.tenant_id', '<uuid>', true)``. The setting is local to that
transaction, so a pooled connection never carries one tenant into the next request; a connection
returned to the pool inside a transaction is rolled back by the pool's reset (psycopg's
``rollback()`` sends ROLLBACK whenever the server reports an open transaction, autocommit or not).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from inopsio.db.base import TenantScoped
from inopsio.db.reader import ReadPool, TenantReader
from inopsio.db.rls import TENANT_SETTING, USER_SETTING

log = logging.getLogger("inopsio.db")
_AFTER_COMMIT = "inopsio.after_commit"


def sqlalchemy_url(url: str) -> str:
    """Any ``postgresql://`` URL as the psycopg 3 dialect URL SQLAlchemy needs."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _begin_statement(tenant_id: UUID | None, user_id: UUID | None = None) -> str:
    parts = ["BEGIN"]
    # str(UUID) is 36 hex digits and dashes: safe to inline, and inlining keeps it one message.
    if tenant_id is not None:
        parts.append(f"SELECT set_config('{TENANT_SETTING}', '{UUID(str(tenant_id))}', true)")
    if user_id is not None:
        parts.append(f"SELECT set_config('{USER_SETTING}', '{UUID(str(user_id))}', true)")
    return "; ".join(parts)


async def switch_tenant(connection: AsyncConnection, tenant_id: UUID) -> None:
    """Scope the rest of this transaction to another tenant.

    Only for kernel work that must commit several tenants' rows atomically (usage flushing: its Redis
    batch is dropped once all its counts are stored, so a partial commit would count twice when the
    batch is retried). Jobs that visit tenants use ``inopsio.jobs.for_each_tenant`` (a transaction per
    tenant); request code gets one tenant per transaction from :meth:`Database.transaction`.
    """
    await connection.execute(
        text(f"SELECT set_config('{TENANT_SETTING}', :tenant, true)"), {"tenant": str(UUID(str(tenant_id)))}
    )


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once the transaction of ``session`` (from :meth:`Database.session`) has committed.

    Never called when the transaction rolls back or its COMMIT fails. It runs synchronously after
    the connection went back to the pool, so it must not block: start a task for slow work. An
    exception it raises is logged, never passed to the code whose change already committed.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class TenantSession(Session):
    """An ORM session bound to one tenant (``info["tenant_id"]``).

    New tenant-owned objects get the session's tenant, and every ORM query on tenant-owned models
    is filtered to it: the application scopes each query, and row-level security stops anything
    that slips past. The filter also lets PostgreSQL use the ``(tenant_id, ...)`` indexes.
    """


@event.listens_for(TenantSession, "before_flush")
def _assign_tenant(session: Session, flush_context: Any, instances: Any) -> None:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        return
    for obj in session.new:
        if isinstance(obj, TenantScoped) and obj.tenant_id is None:
            obj.tenant_id = tenant_id


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or state.is_column_load or state.is_relationship_load:
        return
    # Explicitly cross-tenant reads (a user's own memberships) rely on row-level security alone.
    if state.execution_options.get("include_all_tenants"):
        return
    # Core statements on tables (no mapped entity) rely on row-level security alone: adding the
    # criteria would only cost cache-key work on every execution.
    if not state.all_mappers:
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped,
                lambda cls: cls.tenant_id == tenant_id,
                include_aliases=True,
                track_closure_variables=False,
            )
        )


class Database:
    """Engines for one installation. Create with :meth:`connect`, close with :meth:`dispose`."""

    def __init__(self, app_url: str, owner_url: str | None = None, *, pool_size: int = 10) -> None:
        """``pool_size`` connections per process in all: half (at least one) for one-round-trip
        reads, the rest for transactions, and a quarter of those more may overflow."""
        self.app_url = app_url
        self.owner_url = owner_url
        read_size = max(1, pool_size // 2)
        session_size = max(1, pool_size - read_size)
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(app_url),
            isolation_level="AUTOCOMMIT",
            pool_size=session_size,
            # Overflow connections are closed when returned, so a busy process would keep opening
            # new ones (a PostgreSQL backend each): size the pool for the concurrency instead.
            max_overflow=max(2, session_size // 4),
            pool_pre_ping=False,
            connect_args={"prepare_threshold": 3},
        )
        self._owner_engine: Engine | None = None
        #: Connections for one-round-trip reads (:meth:`reader`), opened on first use.
        self.reads = ReadPool(
            make_url(app_url).set(drivername="postgresql").render_as_string(hide_password=False),
            size=read_size,
        )

    def reader(self, tenant_id: UUID | None, *, user_id: UUID | None = None) -> TenantReader:
        """Single-statement reads scoped to ``tenant_id``, one round trip each (see :mod:`inopsio.db.reader`)."""
        return TenantReader(self.reads, tenant_id, user_id)

    @asynccontextmanager
    async def transaction(
        self, tenant_id: UUID | None, *, user_id: UUID | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction on a Core connection, scoped to ``tenant_id`` (``None``: kernel tables only).

        ``user_id`` additionally lets the user read their own rows in other tenants where a table's
        policy allows it (their memberships). Commits when the block ends, rolls back when it raises.
        """
        async with self.engine.connect() as connection:
            # BEGIN and COMMIT go straight to psycopg: SQLAlchemy's statement machinery would only add
            # cost to commands that return nothing (the driver connection is in autocommit mode).
            # Open SQLAlchemy's transaction first, so an ORM session on this connection joins it
            # instead of owning it (and rolling it back when the session closes).
            await connection.begin()
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute(_begin_statement(tenant_id, user_id))
            try:
                yield connection
            except BaseException:
                await driver.execute("ROLLBACK")
                raise
            await driver.execute("COMMIT")

    @asynccontextmanager
    async def session(self, tenant_id: UUID | None, *, user_id: UUID | None = None) -> AsyncIterator[AsyncSession]:
        """An ORM session in one transaction scoped to ``tenant_id``; commits when the block ends.

        Then runs the callbacks given to :func:`after_commit`.
        """
        async with self.transaction(tenant_id, user_id=user_id) as connection:
            session = AsyncSession(
                bind=connection,
                expire_on_commit=False,
                autoflush=True,
                sync_session_class=TenantSession,
                info={"tenant_id": tenant_id},
            )
            try:
                yield session
                await session.flush()
            finally:
                await session.close()
        for callback in session.info.pop(_AFTER_COMMIT, ()):
            try:
                callback()
            except Exception:
                log.exception("after-commit callback %r failed", callback)

    def owner_engine(self) -> Engine:
        """A synchronous engine as the table owner, for migrations and maintenance only."""
        if self.owner_url is None:
            raise RuntimeError("no owner database URL configured")
        if self._owner_engine is None:
            self._owner_engine = create_engine(sqlalchemy_url(self.owner_url), pool_size=2)
        return self._owner_engine

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()
        if self._owner_engine is not None:
            self._owner_engine.dispose()
