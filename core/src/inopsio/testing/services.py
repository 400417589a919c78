"""Databases and Redis for test runs: the configured servers, or embedded ones started for the run.

Each test session gets its own freshly created database (dropped at the end), so test runs never
see each other's data, whichever server they share.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from inopsio.db.engine import sqlalchemy_url
from inopsio.embedded import start_postgres, start_redis


def server_url() -> str:
    """Owner URL of a PostgreSQL server for tests: ``INOPSIO_DATABASE_URL`` or an embedded one."""
    configured = os.environ.get("INOPSIO_DATABASE_URL")
    if configured:
        return configured
    data_dir = Path(os.environ.get("INOPSIO_TEST_DATA_DIR") or Path(tempfile.gettempdir()) / "inopsio-test-services")
    return start_postgres(data_dir, database="postgres")


def redis_url() -> str:
    configured = os.environ.get("INOPSIO_REDIS_URL")
    if configured:
        return configured
    data_dir = Path(os.environ.get("INOPSIO_TEST_DATA_DIR") or Path(tempfile.gettempdir()) / "inopsio-test-services")
    return start_redis(data_dir)


@contextlib.contextmanager
def scratch_database(owner_server_url: str, prefix: str = "inopsio_test") -> Iterator[str]:
    """Create an empty database on the server, yield its owner URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(sqlalchemy_url(owner_server_url), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(owner_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
