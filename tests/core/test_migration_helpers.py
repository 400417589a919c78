"""Migration helpers: ``tenant_table`` builds what the models declare, and ``inopsio migrations new``
starts a revision on its branch's head."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import CheckConstraint, Index, MetaData, String, Text, UniqueConstraint, create_engine, inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import inopsio_sample
from inopsio import migrate
from inopsio.db.base import NAMING_CONVENTION, Base, TenantOwned, TenantScoped, Timestamped, tenant_foreign_key
from inopsio.db.base import tenant_table_args as table_args
from inopsio.db.engine import sqlalchemy_url
from inopsio.db.migration_helpers import drop_tenant_table, tenant_fk, tenant_table
from inopsio.db.rls import POLICY_NAME, tables_missing_rls
from inopsio.migrate import SCRIPT_LOCATION
from inopsio.settings import Settings
from inopsio.testing.services import scratch_database, server_url

KERNEL_VERSIONS = SCRIPT_LOCATION / "versions"


class ScratchBase(DeclarativeBase):
    """Models of their own metadata (never ``Base.metadata``), named by the kernel's convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = Base.type_annotation_map


class HelperNote(TenantOwned, Timestamped, ScratchBase):
    __tablename__ = "helper_notes"
    __table_args__ = table_args(Index(None, "tenant_id", "title"))

    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)


class HelperNoteTag(TenantOwned, ScratchBase):
    __tablename__ = "helper_note_tags"
    __table_args__ = table_args(
        tenant_foreign_key(["note_id"], "helper_notes", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "note_id", "tag"),
        CheckConstraint("length(tag) > 0", name="tag_not_empty"),
    )

    note_id: Mapped[UUID] = mapped_column()
    tag: Mapped[str] = mapped_column(String(50))


class HelperSetting(TenantScoped, ScratchBase):
    """A natural key: ``(tenant_id, key)``, no ``id``."""

    __tablename__ = "helper_settings"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SampleNoteColour(TenantOwned, Timestamped, ScratchBase):
    """A table a sample plugin revision adds, next to its ``sample_notes``."""

    __tablename__ = "sample_note_colours"
    __table_args__ = table_args(tenant_foreign_key(["note_id"], "sample_notes", ondelete="CASCADE"))

    note_id: Mapped[UUID] = mapped_column()
    colour: Mapped[str] = mapped_column(String(7))


SCRATCH_TABLES = ("helper_notes", "helper_note_tags", "helper_settings")
# The tables the models' foreign keys refer to, so that they resolve; they exist in the database
# already and are left out of every comparison.
sa.Table("tenants", ScratchBase.metadata, sa.Column("id", sa.Uuid(), primary_key=True))
sa.Table(
    "sample_notes",
    ScratchBase.metadata,
    sa.Column("tenant_id", sa.Uuid(), primary_key=True),
    sa.Column("id", sa.Uuid(), primary_key=True),
)


def _differences(connection: Connection, tables: tuple[str, ...]) -> list[Any]:
    """What alembic's autogenerate would change to make ``tables`` match their models."""

    def reflected(name: str | None, type_: str, parent_names: Any) -> bool:
        # The database shows its other tables too (behind a scratch schema, or beside the table).
        return type_ != "table" or name in tables

    def declared(item: Any, name: str | None, type_: str, is_reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or name in tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": reflected, "include_object": declared}
    )
    return list(compare_metadata(context, ScratchBase.metadata))


def _create_with_the_helper() -> None:
    tenant_table(
        "helper_notes",
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False, index=True),
        sa.Index(None, "tenant_id", "title"),
        timestamps=True,
    )
    tenant_table(
        "helper_note_tags",
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        tenant_fk("helper_notes", "note_id", ondelete="CASCADE"),
        sa.UniqueConstraint("tenant_id", "note_id", "tag"),
        sa.CheckConstraint("length(tag) > 0", name="tag_not_empty"),
    )
    tenant_table(
        "helper_settings",
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        primary_key=("key",),
    )


@pytest.fixture
def scratch_schema(inopsio_migrated: Settings) -> Iterator[Connection]:
    """A connection (as the owner) whose current schema is new and empty, with ``tenants`` visible
    behind it; everything it does is rolled back."""
    assert inopsio_migrated.database_url
    engine = create_engine(sqlalchemy_url(inopsio_migrated.database_url), poolclass=pool.NullPool)
    schema = f"helper_{secrets.token_hex(4)}"
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}", public')
            try:
                yield connection
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def _migrate(connection: Connection, step: Any) -> None:
    # No target metadata: the helper's names must not depend on the migration environment's.
    with Operations.context(MigrationContext.configure(connection)):
        step()


def test_tenant_table_creates_what_the_models_declare(scratch_schema: Connection) -> None:
    _migrate(scratch_schema, _create_with_the_helper)

    differences = _differences(scratch_schema, SCRATCH_TABLES)
    assert not differences, "helper and models differ:\n" + "\n".join(map(str, differences))


def test_tenant_table_leads_every_key_with_the_tenant(scratch_schema: Connection) -> None:
    _migrate(scratch_schema, _create_with_the_helper)
    schema = inspect(scratch_schema)

    key = schema.get_pk_constraint("helper_notes")
    assert (key["name"], key["constrained_columns"]) == ("pk_helper_notes", ["tenant_id", "id"])
    assert schema.get_pk_constraint("helper_settings")["constrained_columns"] == ["tenant_id", "key"]
    assert [c["name"] for c in schema.get_columns("helper_notes")][:2] == ["tenant_id", "id"]
    assert not next(c for c in schema.get_columns("helper_settings") if c["name"] == "tenant_id")["nullable"]
    keys = {fk["name"]: fk for fk in schema.get_foreign_keys("helper_note_tags")}
    assert keys["fk_helper_note_tags_tenant_id_tenants"]["referred_columns"] == ["id"]
    assert keys["fk_helper_note_tags_tenant_id_tenants"]["options"]["ondelete"] == "CASCADE"
    to_note = keys["fk_helper_note_tags_tenant_id_note_id_helper_notes"]
    assert (to_note["constrained_columns"], to_note["referred_columns"]) == (
        ["tenant_id", "note_id"],
        ["tenant_id", "id"],
    )
    assert to_note["options"]["ondelete"] == "CASCADE"
    assert {ix["name"] for ix in schema.get_indexes("helper_notes")} == {
        "ix_helper_notes_status",
        "ix_helper_notes_tenant_id_helper_notes_title",
    }


def test_tenant_table_enables_and_forces_row_level_security_with_the_tenant_policy(
    scratch_schema: Connection,
) -> None:
    _migrate(scratch_schema, _create_with_the_helper)

    assert tables_missing_rls(scratch_schema, list(SCRATCH_TABLES)) == []
    policies = scratch_schema.exec_driver_sql(
        "SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()"
    ).all()
    assert sorted(policies) == sorted((table, POLICY_NAME) for table in SCRATCH_TABLES)


def test_drop_tenant_table_removes_the_table_and_its_policy(scratch_schema: Connection) -> None:
    _migrate(scratch_schema, _create_with_the_helper)

    def downgrade() -> None:
        for table in reversed(SCRATCH_TABLES):
            drop_tenant_table(table)

    _migrate(scratch_schema, downgrade)

    assert not scratch_schema.exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    ).all()
    assert not scratch_schema.exec_driver_sql("SELECT 1 FROM pg_policies WHERE schemaname = current_schema()").all()


@pytest.mark.parametrize(
    ("items", "options", "complaint"),
    [
        ((sa.Column("tenant_id", sa.Uuid()),), {}, "tenant_id is added by the helper"),
        ((sa.Column("code", sa.String(5), primary_key=True),), {"primary_key": ()}, "primary_key=(...)"),
        ((sa.Column("name", sa.Text()),), {"primary_key": ("code",)}, "code not given"),
    ],
)
def test_tenant_table_refuses_a_key_it_cannot_lead_with_the_tenant(
    items: tuple[Any, ...], options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        tenant_table("helper_wrong", *items, **options)


SAMPLE_VERSIONS = Path(inopsio_sample.__file__).resolve().parent / "migrations" / "versions"


def _new_revision(*args: str) -> Result:
    from inopsio.cli import main

    return CliRunner().invoke(main, ["migrations", "new", *args], env={"INOPSIO_PLUGINS": "sample"})


def _script(*locations: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.script_config([KERNEL_VERSIONS, *locations]))


def test_migrations_new_starts_a_revision_on_the_plugin_branch_head(tmp_path: Path) -> None:
    versions = shutil.copytree(SAMPLE_VERSIONS, tmp_path / "versions")

    result = _new_revision("sample", "Add note colour", "--dir", str(versions))

    assert result.exit_code == 0, result.output
    written = versions / "sample_0002_add_note_colour.py"
    assert result.output.strip() == str(written)
    revision = _script(versions).get_revision("sample@head")
    assert revision is not None
    assert (revision.revision, revision.down_revision, revision.path) == ("sample_0002", "sample_0001", str(written))
    assert "from inopsio.db.migration_helpers import drop_tenant_table, tenant_fk, tenant_table" in written.read_text()
    assert sorted(p.name for p in SAMPLE_VERSIONS.glob("*.py")) == ["sample_0001_notes.py"]


def test_migrations_new_follows_the_kernel_head(
    tmp_path: Path, inopsio_settings: Settings, inopsio_registry: Any
) -> None:
    (head,) = migrate.heads(inopsio_settings, inopsio_registry)["kernel"]
    versions = shutil.copytree(KERNEL_VERSIONS, tmp_path / "versions")

    result = _new_revision("kernel", "Audit log", "--dir", str(versions))

    assert result.exit_code == 0, result.output
    number = int(head.removeprefix("kernel_")) + 1
    revision = ScriptDirectory.from_config(migrate.script_config([versions])).get_revision("kernel@head")
    assert revision is not None
    assert (revision.revision, revision.down_revision) == (f"kernel_{number:04d}", head)
    assert Path(revision.path).name == f"kernel_{number:04d}_audit_log.py"


def test_migrations_new_on_an_empty_folder_starts_the_plugins_branch_on_the_kernel(tmp_path: Path) -> None:
    result = _new_revision("sample", "Notes", "--dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    script = _script(tmp_path)
    revision = script.get_revision("sample@head")
    kernel_head = script.get_revision("kernel@head")
    assert revision is not None
    assert kernel_head is not None
    assert (revision.revision, revision.down_revision) == ("sample_0001", None)
    assert revision.branch_labels == {"sample"}
    assert revision.dependencies == kernel_head.revision


def test_migrations_new_names_the_branches_when_the_branch_is_unknown(tmp_path: Path) -> None:
    result = _new_revision("nope", "Anything", "--dir", str(tmp_path))

    assert result.exit_code != 0
    assert "no migration branch 'nope'" in result.output
    assert "kernel" in result.output
    assert "sample" in result.output
    assert not list(tmp_path.iterdir())


NOTE_COLOURS = """def upgrade() -> None:
    tenant_table(
        "sample_note_colours",
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        tenant_fk("sample_notes", "note_id", ondelete="CASCADE"),
        timestamps=True,
    )


def downgrade() -> None:
    drop_tenant_table("sample_note_colours")
"""


def test_a_started_revision_written_with_tenant_table_migrates_to_what_the_model_declares(
    tmp_path: Path, inopsio_settings: Settings, inopsio_registry: Any
) -> None:
    versions = shutil.copytree(SAMPLE_VERSIONS, tmp_path / "versions")
    revision = migrate.new_revision(inopsio_registry, "sample", "Note colours", versions)
    template = revision.read_text()
    body = template.index("def upgrade() -> None:")
    revision.write_text(template[:body] + NOTE_COLOURS)

    with scratch_database(server_url(), prefix="inopsio_migrations") as url:
        settings = msgspec.structs.replace(inopsio_settings, database_url=url)
        config = migrate.alembic_config(settings, inopsio_registry)
        registered = config.get_main_option("version_locations") or ""
        assert str(SAMPLE_VERSIONS) in registered
        config.set_main_option("version_locations", registered.replace(str(SAMPLE_VERSIONS), str(versions)))
        command.upgrade(config, "heads")
        engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                assert _differences(connection, ("sample_note_colours",)) == []
                assert tables_missing_rls(connection, ["sample_note_colours"]) == []

            command.downgrade(config, "sample@-1")
            with engine.connect() as connection:
                tables = set(inspect(connection).get_table_names())
        finally:
            engine.dispose()
    assert "sample_note_colours" not in tables
    assert "sample_notes" in tables
