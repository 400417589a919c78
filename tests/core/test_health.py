"""Liveness and readiness: the database, Redis and every plugin's checks, 503 naming what is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from inopsio import hookimpl
from inopsio.app import create_app
from inopsio.errors import PROBLEM_MEDIA_TYPE
from inopsio.settings import Settings

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
#: The kernel's Redis client gives up on a read after this many seconds (inopsio.app.build_kernel).
REDIS_SOCKET_TIMEOUT = 5


class SwitchableCheckPlugin:
    """A plugin whose readiness check fails or hangs when told to."""

    INOPSIO_PLUGIN_NAME = "checked"

    def __init__(self) -> None:
        self.failing = False
        self.hanging = False

    async def check_queue(self, kernel: Any) -> None:
        if self.hanging:
            await asyncio.sleep(30)
        if self.failing:
            raise ConnectionError("queue broker refused the connection")

    @hookimpl
    def register_health_checks(self, register: Any) -> None:
        register("queue", self.check_queue)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def checked() -> SwitchableCheckPlugin:
    return SwitchableCheckPlugin()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def checked_client(inopsio_migrated: Settings, checked: SwitchableCheckPlugin) -> AsyncIterator[Any]:
    app = create_app(inopsio_migrated, plugins=[checked])
    async with AsyncTestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def no_redis_client(inopsio_migrated: Settings) -> AsyncIterator[Any]:
    """A client on an app whose Redis is down for its whole life, start-up included."""
    app = create_app(msgspec.structs.replace(inopsio_migrated, redis_url=UNREACHABLE_REDIS))
    async with AsyncTestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


async def test_live_answers_200_while_the_process_runs(client: Any) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_answers_200_with_the_database_and_redis_checks(client: Any) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {"database", "redis"} <= set(body["checks"])
    for name in ("database", "redis"):
        assert body["checks"][name]["ok"] is True
        assert body["checks"][name]["ms"] >= 0


async def test_health_needs_no_tenant_even_when_one_is_named(client: Any) -> None:
    response = await client.get("/health/ready", headers={"X-Tenant": "no-such-tenant-here"})
    assert response.status_code == 200


async def test_ready_answers_503_problem_naming_redis_when_redis_is_unreachable(no_redis_client: Any) -> None:
    response = await no_redis_client.get("/health/ready")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert body["type"] == "urn:inopsio:problem:not-ready"
    assert body["status"] == 503
    assert "redis" in body["detail"]
    assert "database" not in body["detail"]
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


async def test_api_keeps_answering_what_needs_no_redis_while_redis_is_down(
    no_redis_client: Any, make_tenant: Any
) -> None:
    assert (await no_redis_client.get("/health/live")).status_code == 200
    tenant = await make_tenant()
    response = await no_redis_client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == tenant.slug


async def test_plugin_health_check_appears_in_readiness(checked_client: Any, checked: SwitchableCheckPlugin) -> None:
    checked.failing = checked.hanging = False
    response = await checked_client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["queue"]["ok"] is True


async def test_failing_plugin_health_check_makes_ready_answer_503_naming_it(
    checked_client: Any, checked: SwitchableCheckPlugin
) -> None:
    checked.failing = True
    try:
        response = await checked_client.get("/health/ready")
    finally:
        checked.failing = False
    assert response.status_code == 503
    body = response.json()
    assert "queue" in body["detail"]
    assert body["checks"]["queue"]["ok"] is False
    assert "queue broker refused the connection" in body["checks"]["queue"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert (await checked_client.get("/health/ready")).status_code == 200


async def test_plugin_health_check_that_hangs_makes_ready_answer_503_within_seconds(
    checked_client: Any, checked: SwitchableCheckPlugin
) -> None:
    checked.hanging = True
    try:
        response = await asyncio.wait_for(checked_client.get("/health/ready"), 10)
    finally:
        checked.hanging = False
    assert response.status_code == 503
    assert "no answer within" in response.json()["checks"]["queue"]["error"]


@pytest.mark.slow
async def test_tenant_change_feed_stays_subscribed_through_a_quiet_spell_longer_than_the_redis_socket_timeout(
    kernel: Any,
) -> None:
    channel = kernel.tenants.channel

    async def subscribers() -> int:
        return int(dict(await kernel.redis.pubsub_numsub(channel))[channel.encode()])

    seen = []
    for _ in range(int((REDIS_SOCKET_TIMEOUT + 2) / 0.25)):
        seen.append(await subscribers())
        await asyncio.sleep(0.25)
    assert min(seen) >= 1
    assert min(seen) == max(seen), f"the feed dropped and came back: {seen}"
