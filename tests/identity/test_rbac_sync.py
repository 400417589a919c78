"""A role change made in one process holds in every other process within one second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from inopsio.identity.rbac import Authorizer
from inopsio.realtime.controllers import CONNECT_PERMISSION


async def test_a_role_change_reaches_another_process_within_a_second(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    member_headers = await sign_in(tenant, "member", email=f"m-{tenant.slug}@example.com")
    member = next(m for m in (await client.get("/api/v1/members", headers=owner)).json() if m["email"].startswith("m-"))
    user_id = member["user_id"]
    # "Another process": its own Casbin enforcer and its own Redis connection, following changes.
    other_redis = aioredis.from_url(kernel.settings.redis_url)
    other = Authorizer(
        kernel.db, other_redis, kernel.identity.authorizer.permissions.values(), kernel.settings.redis_namespace
    )
    await other.load_all()
    follower = asyncio.create_task(other.follow_changes())
    try:
        await asyncio.sleep(0.3)  # subscribed
        assert other.role_of(UUID(user_id), tenant.id) == "member"
        assert not other.allowed(UUID(user_id), tenant.id, "kernel.members.write")
        started = time.monotonic()
        changed = await client.patch(f"/api/v1/members/{user_id}", json={"role": "admin"}, headers=owner)
        assert changed.status_code == 200, changed.text
        while not other.allowed(UUID(user_id), tenant.id, "kernel.members.write"):
            assert time.monotonic() - started < 1.0, "the change did not reach the other process within 1 s"
            await asyncio.sleep(0.01)
        assert other.role_of(UUID(user_id), tenant.id) == "admin"
        # And a custom role's grants follow the same path.
        created = await client.post(
            "/api/v1/roles", json={"name": "auditor", "permissions": ["kernel.audit.read"]}, headers=owner
        )
        assert created.status_code == 201
        started = time.monotonic()
        while "kernel.audit.read" not in other.role_permissions("auditor", tenant.id):
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.01)
        assert (await client.get("/api/v1/me", headers=member_headers)).json()["role"] == "admin"
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        await other_redis.aclose()


async def test_remembered_decisions_follow_role_changes_in_this_process(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    """Checks are remembered per process; a change of role or of a role's grants replaces them at once."""
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    await sign_in(tenant, "member", email=f"m-{tenant.slug}@example.com")
    member = next(m for m in (await client.get("/api/v1/members", headers=owner)).json() if m["email"].startswith("m-"))
    user_id = UUID(member["user_id"])
    authorizer = kernel.identity.authorizer
    for _ in range(2):  # the second answer comes from memory
        assert not authorizer.allowed(user_id, tenant.id, "kernel.audit.read")
        assert authorizer.allowed(user_id, tenant.id, CONNECT_PERMISSION) is True
    created = await client.post(
        "/api/v1/roles", json={"name": "auditor", "permissions": ["kernel.audit.read"]}, headers=owner
    )
    assert created.status_code == 201, created.text
    changed = await client.patch(f"/api/v1/members/{user_id}", json={"role": "auditor"}, headers=owner)
    assert changed.status_code == 200, changed.text
    assert authorizer.allowed(user_id, tenant.id, "kernel.audit.read")
    assert not authorizer.allowed(user_id, tenant.id, CONNECT_PERMISSION)
    # A full reload (another process's change missed while Redis was away) forgets them too.
    await authorizer.load_all()
    assert authorizer.allowed(user_id, tenant.id, "kernel.audit.read")
