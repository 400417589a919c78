"""Alembic environment: runs as the table owner (``inopsio.migrate`` holds the migration lock around it)."""

from __future__ import annotations

import logging

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, pool, text

from inopsio.db.engine import sqlalchemy_url

config = context.config
owner_url = config.attributes["owner_url"]
target_metadata = config.attributes["metadata"]
log = logging.getLogger("inopsio.migrate")


def set_aside_unknown_versions(connection: Connection) -> list[str]:
    """Take out of ``alembic_version`` the revisions of modules no longer installed; returned, to be put back.

    A module that was installed, migrated and then uninstalled leaves its branch's head there, and
    alembic refuses to run at all on a revision it cannot find. Its tables stay (uninstalling keeps
    the data); its version row goes back after the run, so reinstalling it carries on from there.
    """
    if not inspect(connection).has_table("alembic_version"):
        return []
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    unknown = [version for version in current if version not in known]
    if unknown:
        log.info("keeping the migration versions of modules that are not installed: %s", ", ".join(unknown))
        connection.execute(text("DELETE FROM alembic_version WHERE version_num = ANY(:v)"), {"v": unknown})
    return unknown


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=False,
            include_schemas=False,
        )
        with context.begin_transaction():
            unknown = set_aside_unknown_versions(connection)
            context.run_migrations()
            for version in unknown:
                connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(owner_url), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
