"""Liveness and readiness: ``/health/live`` always answers; ``/health/ready`` runs every registered check."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Response, get
from sqlalchemy import text

from inopsio import hookimpl
from inopsio.deps import KernelDep
from inopsio.errors import PROBLEM_MEDIA_TYPE, problem_type
from inopsio.kernel import Kernel
from inopsio.tenancy.resolution import TENANCY_OPT

CHECK_TIMEOUT = 2.0


async def check_database(kernel: Kernel) -> None:
    async with kernel.db.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def check_redis(kernel: Kernel) -> None:
    await kernel.redis.ping()


async def _run(kernel: Kernel, name: str, check: Any) -> tuple[str, str | None, float]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(kernel), CHECK_TIMEOUT)
        error = None
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return name, error, round((time.perf_counter() - started) * 1000, 1)


@get("/health/live", opt={TENANCY_OPT: "none"}, tags=["health"], include_in_schema=True)
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/health/ready", opt={TENANCY_OPT: "none"}, tags=["health"])
async def ready(kernel: KernelDep) -> Response[Any]:
    """The database, Redis and every plugin's checks answer; 503 naming what does not."""
    results = await asyncio.gather(*(_run(kernel, name, check) for _, name, check in kernel.health_checks))
    checks = {
        name: {"ok": error is None, "ms": ms, **({"error": error} if error else {})} for name, error, ms in results
    }
    failed = [name for name, error, _ in results if error]
    if failed:
        body = {
            "type": problem_type("not-ready"),
            "title": "Service Unavailable",
            "status": 503,
            "detail": f"Not ready: {', '.join(failed)} unavailable.",
            "checks": checks,
        }
        return Response(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)
    return Response({"status": "ready", "checks": checks})


@hookimpl
def register_routes(register: Any) -> None:
    register(live)
    register(ready)


@hookimpl
def register_health_checks(register: Any) -> None:
    register("database", check_database)
    register("redis", check_redis)
