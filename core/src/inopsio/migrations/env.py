"""Alembic environment: runs as the table owner, one migration run at a time per database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from inopsio.db.engine import sqlalchemy_url

config = context.config
owner_url = config.attributes["owner_url"]
target_metadata = config.attributes["metadata"]
# Any stable 64-bit number: serialises concurrent `inopsio migrate` runs on one database.
MIGRATION_LOCK = 0x1A0B510


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                compare_server_default=False,
                include_schemas=False,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(owner_url), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
