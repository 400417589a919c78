"""Quotas and usage: per-minute API calls, daily limits, uploads, gauges, overrides and counters."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from inopsio.errors import PROBLEM_MEDIA_TYPE, Problem, problem_type
from inopsio.quotas.models import UsageGauge
from inopsio.quotas.services import QuotaService
from inopsio.settings import QuotaLimits, load_settings

PLATFORM = "/api/v1/platform/tenants"


def tenant_headers(slug: str) -> dict[str, str]:
    return {"X-Tenant": slug}


async def set_quotas(client: Any, headers: dict[str, str], tenant_id: Any, method: str = "PATCH", **quotas: Any) -> Any:
    response = await client.request(method, f"{PLATFORM}/{tenant_id}/quotas", json=quotas, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def gauge_value(kernel: Any, tenant_id: Any, quota: str) -> int:
    async with kernel.db.session(tenant_id) as session:
        value = (await session.execute(select(UsageGauge.value).where(UsageGauge.metric == quota))).scalar_one_or_none()
    return int(value or 0)


async def change_gauge(kernel: Any, tenant: Any, quota: str, delta: int) -> int:
    async with kernel.db.session(tenant.id) as session:
        return await kernel.quotas.change_gauge(session, tenant, quota, delta)  # type: ignore[no-any-return]


async def not_at_the_end_of_a_minute() -> None:
    """Per-minute counters reset on the minute: start a short burst well inside one."""
    left = 60 - time.time() % 60
    if left < 5:
        await asyncio.sleep(left + 0.2)


# API calls per minute --------------------------------------------------------------------------


async def test_api_calls_beyond_the_per_minute_quota_get_429_naming_the_quota(
    client: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    limited, other = await make_tenant(), await make_tenant()
    await set_quotas(client, operator_headers, limited.id, api_calls_per_minute=4)
    await not_at_the_end_of_a_minute()

    # Signing in is the minute's first call (it counts like any other), then three anonymous ones.
    member = await sign_in(limited, role="member")
    statuses = [
        (await client.get("/api/v1/tenant", headers=tenant_headers(limited.slug))).status_code for _ in range(3)
    ]
    refused = await client.get("/api/v1/sample/notes", headers=member)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["type"] == problem_type("quota-exceeded")
    assert body["quota"] == "api_calls_per_minute"
    assert body["limit"] == 4
    # Anonymous requests are refused the same way: the quota is the tenant's, whoever calls.
    anonymous = await client.get("/api/v1/tenant", headers=tenant_headers(limited.slug))
    assert anonymous.status_code == 429
    assert anonymous.json()["quota"] == "api_calls_per_minute"
    # Another tenant keeps its own, default allowance.
    for _ in range(5):
        assert (await client.get("/api/v1/tenant", headers=tenant_headers(other.slug))).status_code == 200


async def test_one_user_beyond_the_per_user_rate_limit_gets_429_while_others_get_through(
    client: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    view = await set_quotas(client, operator_headers, tenant.id, requests_per_minute_per_user=2)
    assert view["limits"]["requests_per_minute_per_user"] == 2
    assert view["limits"]["api_calls_per_minute"] == view["defaults"]["api_calls_per_minute"]
    await not_at_the_end_of_a_minute()
    busy, calm = await sign_in(tenant, role="member"), await sign_in(tenant, role="member")

    statuses = [(await client.get("/api/v1/sample/notes", headers=busy)).status_code for _ in range(2)]
    refused = await client.get("/api/v1/sample/notes", headers=busy)

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["type"] == problem_type("rate-limited") == "urn:inopsio:problem:rate-limited"
    assert body["status"] == 429
    assert body["quota"] == "requests_per_minute_per_user"
    assert body["limit"] == 2
    # The limit is the user's, not the tenant's: another member and anonymous callers still get through.
    assert (await client.get("/api/v1/sample/notes", headers=calm)).status_code == 200
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200


async def test_platform_requests_do_not_spend_a_tenants_api_calls(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    await set_quotas(client, operator_headers, tenant.id, api_calls_per_minute=1)
    await not_at_the_end_of_a_minute()

    for _ in range(3):
        assert (await client.get(f"{PLATFORM}/{tenant.id}", headers=operator_headers)).status_code == 200
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 429


async def test_a_null_override_means_unlimited(
    client: Any, kernel: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()

    view = await set_quotas(client, operator_headers, tenant.id, api_calls_per_minute=None, storage_bytes=None)

    assert view["limits"]["api_calls_per_minute"] is None
    assert view["overrides"] == {"api_calls_per_minute": None, "storage_bytes": None}
    tenant = await kernel.tenants.get(tenant.id)
    assert await change_gauge(kernel, tenant, "storage_bytes", 10**15) == 10**15
    for _ in range(3):
        assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200


# Daily quotas ----------------------------------------------------------------------------------


async def test_a_daily_quota_refuses_once_spent_and_does_not_count_the_refusal(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"workflow_runs_per_day": 2})

    assert await kernel.quotas.consume_daily(tenant, "workflow_runs_per_day") == 1
    assert await kernel.quotas.consume_daily(tenant, "workflow_runs_per_day") == 2
    for _ in range(2):
        with pytest.raises(Problem) as refused:
            await kernel.quotas.consume_daily(tenant, "workflow_runs_per_day")
        assert refused.value.status_code == 429
        assert refused.value.members["quota"] == "workflow_runs_per_day"
        assert refused.value.members["limit"] == 2

    # The refused attempts left no trace: one more allowed run is number 3.
    tenant = await kernel.tenants.set_quotas(tenant.id, {"workflow_runs_per_day": 3})
    assert await kernel.quotas.consume_daily(tenant, "workflow_runs_per_day") == 3


async def test_a_use_larger_than_what_is_left_is_refused_whole(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"security_events_per_day": 10})

    assert await kernel.quotas.consume_daily(tenant, "security_events_per_day", 8) == 8
    with pytest.raises(Problem):
        await kernel.quotas.consume_daily(tenant, "security_events_per_day", 3)
    assert await kernel.quotas.consume_daily(tenant, "security_events_per_day", 2) == 10


async def test_daily_use_shows_in_the_usage_counters(
    client: Any, kernel: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    await kernel.quotas.consume_daily(tenant, "workflow_runs_per_day", 4)

    usage = (await client.get(f"{PLATFORM}/{tenant.id}/usage", headers=operator_headers)).json()

    assert {"day": _today(), "metric": "workflow_runs", "value": 4} in usage["daily"]


# Uploads ---------------------------------------------------------------------------------------


async def test_an_upload_larger_than_the_quota_is_refused_with_413(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"upload_bytes": 1000})

    kernel.quotas.check_upload(tenant, 1000)
    with pytest.raises(Problem) as refused:
        kernel.quotas.check_upload(tenant, 1001)

    assert refused.value.status_code == 413
    assert refused.value.code == "quota-exceeded"
    assert refused.value.members == {"quota": "upload_bytes", "limit": 1000}


# Gauges ----------------------------------------------------------------------------------------


async def test_storage_beyond_its_quota_is_refused_with_413(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"storage_bytes": 1000})

    assert await change_gauge(kernel, tenant, "storage_bytes", 600) == 600
    assert await change_gauge(kernel, tenant, "storage_bytes", 400) == 1000
    with pytest.raises(Problem) as refused:
        await change_gauge(kernel, tenant, "storage_bytes", 1)

    assert refused.value.status_code == 413
    assert refused.value.members["quota"] == "storage_bytes"
    assert await gauge_value(kernel, tenant.id, "storage_bytes") == 1000


async def test_a_single_change_larger_than_the_whole_quota_is_refused(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"storage_bytes": 1000})

    with pytest.raises(Problem) as refused:
        await change_gauge(kernel, tenant, "storage_bytes", 1001)

    assert refused.value.status_code == 413
    assert await gauge_value(kernel, tenant.id, "storage_bytes") == 0


async def test_users_beyond_their_quota_are_refused_with_429(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"users": 2})

    await change_gauge(kernel, tenant, "users", 1)
    await change_gauge(kernel, tenant, "users", 1)
    with pytest.raises(Problem) as refused:
        await change_gauge(kernel, tenant, "users", 1)

    assert refused.value.status_code == 429
    assert refused.value.members == {"quota": "users", "limit": 2}


async def test_a_refused_gauge_change_leaves_the_callers_transaction_usable(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"users": 1})

    async with kernel.db.session(tenant.id) as session:
        assert await kernel.quotas.change_gauge(session, tenant, "users", 1) == 1
        with pytest.raises(Problem):
            await kernel.quotas.change_gauge(session, tenant, "users", 1)
        assert await kernel.quotas.change_gauge(session, tenant, "users", -1) == 0

    assert await gauge_value(kernel, tenant.id, "users") == 0


async def test_a_negative_change_always_succeeds_even_above_the_limit(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    assert await change_gauge(kernel, tenant, "storage_bytes", 900) == 900
    # The operator lowers the quota below what the tenant already stores.
    tenant = await kernel.tenants.set_quotas(tenant.id, {"storage_bytes": 100})

    assert await change_gauge(kernel, tenant, "storage_bytes", -300) == 600
    with pytest.raises(Problem):
        await change_gauge(kernel, tenant, "storage_bytes", 1)
    assert await change_gauge(kernel, tenant, "storage_bytes", -600) == 0


async def test_a_gauges_quota_only_limits_its_own_tenant(kernel: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    a = await kernel.tenants.set_quotas(a.id, {"users": 1})
    b = await kernel.tenants.set_quotas(b.id, {"users": 1})

    assert await change_gauge(kernel, a, "users", 1) == 1
    assert await change_gauge(kernel, b, "users", 1) == 1


async def test_concurrent_increments_never_exceed_the_limit(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    tenant = await kernel.tenants.set_quotas(tenant.id, {"storage_bytes": 20})

    async def attempt() -> bool:
        try:
            await change_gauge(kernel, tenant, "storage_bytes", 3)
        except Problem:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(25)))

    final = await gauge_value(kernel, tenant.id, "storage_bytes")
    assert final <= 20
    assert final == results.count(True) * 3
    assert results.count(True) == 6  # 6 x 3 = 18; a seventh would make 21


# Overrides -------------------------------------------------------------------------------------


async def test_patch_merges_overrides_and_put_replaces_them(
    client: Any, kernel: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    defaults = msgspec.to_builtins(kernel.settings.quotas)

    await set_quotas(client, operator_headers, tenant.id, users=5)
    merged = await set_quotas(client, operator_headers, tenant.id, upload_bytes=10)
    assert merged["overrides"] == {"users": 5, "upload_bytes": 10}
    assert merged["limits"] == {**defaults, "users": 5, "upload_bytes": 10}

    replaced = await set_quotas(client, operator_headers, tenant.id, method="PUT", storage_bytes=7)
    assert replaced["overrides"] == {"storage_bytes": 7}
    assert replaced["limits"] == {**defaults, "storage_bytes": 7}

    fetched = (await client.get(f"{PLATFORM}/{tenant.id}/quotas", headers=operator_headers)).json()
    assert fetched == replaced
    assert fetched["defaults"] == defaults


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_an_unknown_quota_name_is_refused(
    client: Any, make_tenant: Any, operator_headers: dict[str, str], method: str
) -> None:
    tenant = await make_tenant()

    response = await client.request(
        method, f"{PLATFORM}/{tenant.id}/quotas", json={"users": 3, "coffee_per_day": 2}, headers=operator_headers
    )

    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert response.json()["type"] == problem_type("unknown-quota")
    assert "coffee_per_day" in response.json()["detail"]
    quotas = (await client.get(f"{PLATFORM}/{tenant.id}/quotas", headers=operator_headers)).json()
    assert quotas["overrides"] == {}


async def test_a_negative_quota_is_refused(client: Any, make_tenant: Any, operator_headers: dict[str, str]) -> None:
    tenant = await make_tenant()

    response = await client.patch(f"{PLATFORM}/{tenant.id}/quotas", json={"users": -1}, headers=operator_headers)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)


async def test_defaults_come_from_the_settings(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    assert kernel.quotas.limits(tenant) == msgspec.to_builtins(kernel.settings.quotas)

    settings = load_settings({"INOPSIO_QUOTAS__USERS": "7", "INOPSIO_QUOTAS__UPLOAD_BYTES": ""})
    assert settings.quotas == QuotaLimits(users=7, upload_bytes=None)
    quotas = QuotaService(kernel.db, kernel.redis, settings.quotas, kernel.settings.redis_namespace)

    assert quotas.limit(tenant, "users") == 7
    assert quotas.limit(tenant, "upload_bytes") is None
    quotas.check_upload(tenant, 10**12)
    # An override wins over the default.
    tenant = await kernel.tenants.set_quotas(tenant.id, {"users": 2})
    assert quotas.limit(tenant, "users") == 2


# Usage counters --------------------------------------------------------------------------------


async def test_usage_shows_todays_api_calls_and_the_gauges(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    for _ in range(3):
        assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200
    other_member = await sign_in(other, role="member")
    assert (await client.get("/api/v1/sample/notes", headers=other_member)).status_code == 200
    await change_gauge(kernel, tenant, "storage_bytes", 1234)

    response = await client.get(f"{PLATFORM}/{tenant.id}/usage", headers=operator_headers)

    assert response.status_code == 200
    usage = response.json()
    assert usage["tenant_id"] == str(tenant.id)
    assert usage["until"] == _today()
    assert usage["daily"] == [{"day": _today(), "metric": "api_calls", "value": 3}]
    assert usage["gauges"] == {"storage_bytes": 1234}
    assert usage["limits"] == kernel.quotas.limits(tenant)
    # The other tenant's calls, the sign-in and the authenticated one, are counted as its own.
    other_usage = (await client.get(f"{PLATFORM}/{other.id}/usage", headers=operator_headers)).json()
    assert {"day": _today(), "metric": "api_calls", "value": 2} in other_usage["daily"]


async def test_flushing_twice_does_not_count_twice(
    client: Any, kernel: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    for _ in range(2):
        await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))

    await kernel.quotas.flush()
    await kernel.quotas.flush()
    usage = (await client.get(f"{PLATFORM}/{tenant.id}/usage", headers=operator_headers)).json()
    assert usage["daily"] == [{"day": _today(), "metric": "api_calls", "value": 2}]

    # Later calls add to the day's counter.
    await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))
    await kernel.quotas.flush()
    usage = (await client.get(f"{PLATFORM}/{tenant.id}/usage", headers=operator_headers)).json()
    assert usage["daily"] == [{"day": _today(), "metric": "api_calls", "value": 3}]


async def test_usage_range_is_checked(client: Any, make_tenant: Any, operator_headers: dict[str, str]) -> None:
    tenant = await make_tenant()

    response = await client.get(
        f"{PLATFORM}/{tenant.id}/usage", params={"since": "2030-01-02", "until": "2030-01-01"}, headers=operator_headers
    )

    assert response.status_code == 400
    assert response.json()["type"] == problem_type("invalid-range")


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()
