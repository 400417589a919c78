"""``inopsio migrate``: upgrade the kernel's and every plugin's alembic branch, then set up the app role.

After upgrading, every tenant-owned table of every loaded plugin must have row-level security
(ENABLE + FORCE + a tenant policy); a table without it stops the migration with its name.
"""

from __future__ import annotations

import os
import re
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from inopsio.app import collect_migrations, collect_models
from inopsio.db.base import TENANT_SCOPED, Base
from inopsio.db.engine import sqlalchemy_url
from inopsio.db.rls import tables_missing_rls
from inopsio.db.roles import ensure_app_role
from inopsio.plugins import PluginRegistry
from inopsio.settings import Settings

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


class MigrationError(RuntimeError):
    """The schema could not be brought up to date safely."""


def alembic_config(settings: Settings, registry: PluginRegistry) -> Config:
    """An alembic configuration with the kernel's and every loaded plugin's version folders."""
    assert settings.database_url
    collect_models(registry)
    config = script_config([location for _, (location, _) in collect_migrations(registry)])
    config.attributes["owner_url"] = settings.database_url
    config.attributes["metadata"] = Base.metadata
    return config


def script_config(locations: list[Path]) -> Config:
    """The revision files' side of the configuration: enough to read and write revisions, no database."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(location) for location in locations))
    return config


def branch_labels(settings: Settings, registry: PluginRegistry) -> list[str]:
    return [label for _, (_, label) in collect_migrations(registry)]


def tenant_tables() -> list[str]:
    return sorted(t.name for t in Base.metadata.sorted_tables if t.info.get(TENANT_SCOPED))


#: PostgreSQL advisory lock key held while a process migrates ("inopsio" in ASCII).
MIGRATION_LOCK = 0x696E6F7073696F


@contextmanager
def _migration_lock(settings: Settings) -> Iterator[None]:
    """One migrating process at a time per database (held on a connection of its own)."""
    assert settings.database_url
    engine = create_engine(sqlalchemy_url(settings.database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as lock:
            lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
            try:
                yield
            finally:
                lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
    finally:
        engine.dispose()


def upgrade(settings: Settings, registry: PluginRegistry, target: str = "heads") -> None:
    """Upgrade to ``target`` (all heads), then configure the app role and verify row-level security.

    Processes started together (several ``inopsio serve`` or replicas) take turns: concurrent GRANTs
    on one table fail with "tuple concurrently updated", and two alembic runs would race.
    """
    with _migration_lock(settings):
        command.upgrade(alembic_config(settings, registry), target)
        finish(settings)


def downgrade(settings: Settings, registry: PluginRegistry, target: str) -> None:
    with _migration_lock(settings):
        command.downgrade(alembic_config(settings, registry), target)


def finish(settings: Settings) -> None:
    assert settings.database_url
    engine = create_engine(sqlalchemy_url(settings.database_url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            password = make_url(settings.database_app_url).password if settings.database_app_url else None
            ensure_app_role(
                connection,
                settings.database_app_role
                if not settings.database_app_url
                else str(make_url(settings.database_app_url).username),
                password,
                Base.metadata,
            )
            existing = set(
                connection.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                ).scalars()
            )
            missing = tables_missing_rls(connection, [t for t in tenant_tables() if t in existing])
    finally:
        engine.dispose()
    if missing:
        raise MigrationError(
            "tenant-owned table(s) without row-level security: "
            + ", ".join(missing)
            + " (call inopsio.db.rls.enable_tenant_rls(op, table) in the migration that creates them)"
        )


def heads(settings: Settings, registry: PluginRegistry) -> dict[str, list[str]]:
    """Each branch label's heads, as alembic sees the version folders."""
    script = ScriptDirectory.from_config(alembic_config(settings, registry))
    result: dict[str, list[str]] = {}
    for label in branch_labels(settings, registry):
        result[label] = [rev.revision for rev in script.get_revisions(f"{label}@heads") if rev is not None]
    return result


#: A revision id ending in a number (``kernel_0007``, ``crm_0006``): the next one counts on from it.
_NUMBERED_REVISION = re.compile(r"^(?P<stem>.*?)(?P<number>\d+)$")


def new_revision(registry: PluginRegistry, branch: str, message: str, directory: Path | None = None) -> Path:
    """Write a new revision file on ``branch`` (a branch label or a plugin's name); return its path.

    The revision follows the branch's head and is numbered after it (``crm_0006`` → ``crm_0007``).
    On a branch with no revision yet it is the branch's first: it carries the branch label and
    depends on the kernel's head. ``directory`` stands in for the branch's registered folder (a
    copy of it, for example): the head is read from it and the file written into it.
    """
    branches = collect_migrations(registry)
    by_label = {label: location for _, (location, label) in branches}
    by_plugin = {plugin: label for plugin, (_, label) in branches}
    label = branch if branch in by_label else by_plugin.get(branch, "")
    if not label:
        raise MigrationError(f"no migration branch {branch!r} (branches: {', '.join(sorted(by_label))})")
    registered = by_label[label]
    folder = (directory or registered).resolve()
    config = script_config([folder if location == registered else location for _, (location, _) in branches])
    config.cmd_opts = Namespace(quiet=True)  # the caller reports the file; alembic would print it too
    script = ScriptDirectory.from_config(config)
    try:
        heads = sorted(rev.revision for rev in script.get_revisions(f"{label}@heads") if rev is not None)
    except CommandError:  # no revision carries the label yet: this one starts the branch
        heads = []
    if len(heads) > 1:
        raise MigrationError(f"branch {label!r} has several heads ({', '.join(heads)}); merge them first")
    if heads:
        numbered = _NUMBERED_REVISION.match(heads[0])
        revision_id = (
            numbered["stem"] + str(int(numbered["number"]) + 1).zfill(len(numbered["number"])) if numbered else None
        )
        created = command.revision(config, message, head=f"{label}@head", rev_id=revision_id, version_path=str(folder))
    else:
        # A plugin's tables may refer to any kernel table that exists today: build on the kernel's head.
        kernel = (
            [rev.revision for rev in script.get_revisions("kernel@heads") if rev is not None]
            if label != "kernel"
            else []
        )
        created = command.revision(
            config,
            message,
            head="base",
            branch_label=label,
            depends_on=kernel[0] if kernel else None,
            rev_id=f"{label}_0001",
            version_path=str(folder),
        )
    if created is None or isinstance(created, list):  # pragma: no cover - one head in, one revision out
        raise MigrationError(f"alembic wrote no single revision on {label!r}")
    return Path(created.path)
