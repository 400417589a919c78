"""Migrations: one head per branch, a full round trip, models matching the schema, and the RLS and role checks."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Engine, make_url

from inopsio import migrate
from inopsio.db.base import Base
from inopsio.db.engine import sqlalchemy_url
from inopsio.db.roles import UnsafeAppRole, app_url_from_owner_url, check_app_role
from inopsio.migrate import MigrationError
from inopsio.settings import Settings
from inopsio.testing.services import scratch_database, server_url


@pytest.fixture
def scratch_settings(inopsio_settings: Settings) -> Iterator[Settings]:
    """Settings on an empty database of its own, dropped afterwards."""
    with scratch_database(server_url(), prefix="inopsio_migrations") as url:
        yield msgspec.structs.replace(inopsio_settings, database_url=url)


@pytest.fixture
def migrated_scratch(scratch_settings: Settings, inopsio_registry: Any) -> Settings:
    migrate.upgrade(scratch_settings, inopsio_registry)
    return scratch_settings


def _owner_engine(settings: Settings) -> Engine:
    assert settings.database_url
    return create_engine(sqlalchemy_url(settings.database_url), poolclass=pool.NullPool)


def _tables(settings: Settings) -> set[str]:
    engine = _owner_engine(settings)
    try:
        with engine.connect() as connection:
            return set(
                connection.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                ).scalars()
            )
    finally:
        engine.dispose()


def _schema_differences(settings: Settings) -> list[Any]:
    engine = _owner_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _as_owner(settings: Settings, *statements: str) -> None:
    engine = _owner_engine(settings)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def test_every_branch_has_exactly_one_head(inopsio_settings: Settings, inopsio_registry: Any) -> None:
    heads = migrate.heads(inopsio_settings, inopsio_registry)
    assert {"kernel", "sample"} <= set(heads)
    for label, revisions in heads.items():
        assert len(revisions) == 1, f"branch {label!r} has heads {revisions}"


def test_every_plugin_with_tenant_tables_has_its_own_branch(inopsio_settings: Settings, inopsio_registry: Any) -> None:
    labels = migrate.branch_labels(inopsio_settings, inopsio_registry)
    assert len(labels) == len(set(labels))
    assert "sample_notes" in migrate.tenant_tables()


def test_upgrade_downgrade_upgrade_round_trip_works(scratch_settings: Settings, inopsio_registry: Any) -> None:
    migrate.upgrade(scratch_settings, inopsio_registry)
    upgraded = _tables(scratch_settings)
    assert {"tenants", "sample_notes", "sample_note_tags"} <= upgraded

    migrate.downgrade(scratch_settings, inopsio_registry, "base")
    assert _tables(scratch_settings) <= {"alembic_version"}

    migrate.upgrade(scratch_settings, inopsio_registry)
    assert _tables(scratch_settings) == upgraded
    assert not _schema_differences(scratch_settings)


def test_one_plugin_branch_downgrades_without_touching_the_kernel(
    migrated_scratch: Settings, inopsio_registry: Any
) -> None:
    migrate.downgrade(migrated_scratch, inopsio_registry, "sample@base")
    tables = _tables(migrated_scratch)
    assert "sample_notes" not in tables
    assert "tenants" in tables
    migrate.upgrade(migrated_scratch, inopsio_registry)
    assert "sample_notes" in _tables(migrated_scratch)


def test_upgrading_an_up_to_date_database_changes_nothing(migrated_scratch: Settings, inopsio_registry: Any) -> None:
    before = _tables(migrated_scratch)
    migrate.upgrade(migrated_scratch, inopsio_registry)
    assert _tables(migrated_scratch) == before


def test_processes_migrating_at_once_take_turns(scratch_settings: Settings, inopsio_registry: Any) -> None:
    """Several processes started together (replicas, ``serve`` beside ``worker``) all migrate and
    grant: they must queue on the migration lock, not collide ("tuple concurrently updated")."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(scratch_settings, inopsio_registry)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    # While one holds the lock, the others wait for it (seen in pg_locks as advisory locks).
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert {"tenants", "sample_notes"} <= _tables(scratch_settings)
    assert not _schema_differences(scratch_settings)


def test_models_match_the_migrations(migrated_scratch: Settings) -> None:
    differences = _schema_differences(migrated_scratch)
    assert not differences, "models and migrations differ:\n" + "\n".join(map(str, differences))


def test_migrate_refuses_a_tenant_table_without_its_policy_naming_the_table(migrated_scratch: Settings) -> None:
    _as_owner(migrated_scratch, "DROP POLICY tenant_isolation ON sample_notes")
    with pytest.raises(MigrationError) as excinfo:
        migrate.finish(migrated_scratch)
    assert "sample_notes" in str(excinfo.value)
    assert "sample_note_tags" not in str(excinfo.value)


@pytest.mark.parametrize(
    "weakening",
    [
        "ALTER TABLE sample_note_tags NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE sample_note_tags DISABLE ROW LEVEL SECURITY",
    ],
)
def test_migrate_refuses_a_tenant_table_whose_rls_is_not_forced_or_enabled(
    migrated_scratch: Settings, weakening: str
) -> None:
    _as_owner(migrated_scratch, weakening)
    with pytest.raises(MigrationError, match="sample_note_tags"):
        migrate.finish(migrated_scratch)


def test_migrate_refuses_a_policy_that_ignores_the_tenant_setting(migrated_scratch: Settings) -> None:
    _as_owner(
        migrated_scratch,
        "DROP POLICY tenant_isolation ON sample_notes",
        "CREATE POLICY tenant_isolation ON sample_notes USING (true) WITH CHECK (true)",
    )
    with pytest.raises(MigrationError, match="sample_notes"):
        migrate.finish(migrated_scratch)


def test_migrate_command_reports_the_table_without_rls(migrated_scratch: Settings) -> None:
    from click.testing import CliRunner

    from inopsio.cli import main

    _as_owner(migrated_scratch, "DROP POLICY tenant_isolation ON sample_notes")
    assert migrated_scratch.database_url
    assert migrated_scratch.redis_url
    env = {
        "INOPSIO_DATABASE_URL": migrated_scratch.database_url,
        "INOPSIO_REDIS_URL": migrated_scratch.redis_url,
        "INOPSIO_PLUGINS": "",
    }
    result = CliRunner().invoke(main, ["migrate"], env=env)
    assert result.exit_code != 0
    assert "sample_notes" in result.output
    assert "row-level security" in result.output


def test_app_role_cannot_bypass_rls_and_owns_nothing(inopsio_migrated: Settings) -> None:
    role = inopsio_migrated.database_app_role
    engine = _owner_engine(inopsio_migrated)
    try:
        with engine.connect() as connection:
            powers = connection.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin "
                    "FROM pg_roles WHERE rolname = :r"
                ),
                {"r": role},
            ).one()
            owned = connection.execute(
                text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :r"),
                {"r": role},
            ).scalar_one()
    finally:
        engine.dispose()
    assert tuple(powers) == (False, False, False, False, True)
    assert owned == 0


async def test_app_connects_as_the_app_role(kernel: Any) -> None:
    async with kernel.db.engine.connect() as connection:
        user = (await connection.exec_driver_sql("SELECT current_user")).scalar_one()
    assert user == kernel.settings.database_app_role


def test_check_app_role_passes_for_the_app_role(inopsio_migrated: Settings) -> None:
    assert inopsio_migrated.database_url
    app_url = app_url_from_owner_url(inopsio_migrated.database_url, inopsio_migrated.database_app_role)
    engine = create_engine(sqlalchemy_url(app_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            check_app_role(connection)
    finally:
        engine.dispose()


def test_check_app_role_refuses_a_superuser_connection(inopsio_migrated: Settings) -> None:
    engine = _owner_engine(inopsio_migrated)
    try:
        with engine.connect() as connection, pytest.raises(UnsafeAppRole) as excinfo:
            check_app_role(connection)
    finally:
        engine.dispose()
    owner = make_url(inopsio_migrated.database_url or "").username
    assert f"{owner!r}" in str(excinfo.value)
    assert "superuser" in str(excinfo.value)


@pytest.fixture
def own_role_scratch(inopsio_settings: Settings, inopsio_registry: Any) -> Iterator[Settings]:
    """A migrated scratch database whose app role is its own: changing it cannot disturb other runs."""
    role = f"inopsio_app_test_{secrets.token_hex(4)}"
    with scratch_database(server_url(), prefix="inopsio_migrations") as url:
        settings = msgspec.structs.replace(inopsio_settings, database_url=url, database_app_role=role)
        migrate.upgrade(settings, inopsio_registry)
        yield settings
    _as_owner(msgspec.structs.replace(settings, database_url=server_url()), f'DROP ROLE IF EXISTS "{role}"')


def test_migrate_strips_bypassrls_and_superuser_from_an_existing_app_role(own_role_scratch: Settings) -> None:
    role = own_role_scratch.database_app_role
    _as_owner(own_role_scratch, f'ALTER ROLE "{role}" BYPASSRLS CREATEROLE')
    migrate.finish(own_role_scratch)
    engine = _owner_engine(own_role_scratch)
    try:
        with engine.connect() as connection:
            powers = connection.execute(
                text("SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).one()
    finally:
        engine.dispose()
    assert tuple(powers) == (False, False, False)


def test_an_uninstalled_modules_version_neither_stops_migrate_nor_is_forgotten(
    migrated_scratch: Settings, inopsio_registry: Any
) -> None:
    """A module installed, migrated, then uninstalled leaves its head in alembic_version: alembic
    alone refuses to run on a revision it cannot find, so the platform would not start any more."""
    _as_owner(migrated_scratch, "INSERT INTO alembic_version (version_num) VALUES ('gone_0007')")
    before = _versions(migrated_scratch)
    migrate.upgrade(migrated_scratch, inopsio_registry)
    # Still there for when the module comes back, and nothing else changed.
    assert _versions(migrated_scratch) == before
    assert "gone_0007" in before
    # The next run sets it aside and puts it back again: kept once, not lost, not doubled.
    migrate.upgrade(migrated_scratch, inopsio_registry)
    assert _versions(migrated_scratch) == before


def _versions(settings: Settings) -> list[str]:
    engine = _owner_engine(settings)
    try:
        with engine.connect() as connection:
            return sorted(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    finally:
        engine.dispose()
