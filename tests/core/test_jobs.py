"""Background jobs: registered by a plugin, queued with its tenant, run by a real arq worker."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import pytest

from inopsio.jobs import collect_jobs
from inopsio.plugins import PluginError, build_plugin_manager
from inopsio.settings import load_settings


async def reports(kernel: Any, key: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(raw) for raw in await kernel.redis.lrange(key, 0, -1)]


async def test_job_runs_in_its_tenants_scope(kernel: Any, make_tenant: Any, run_jobs: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    key_a, key_b = f"test:{secrets.token_hex(4)}", f"test:{secrets.token_hex(4)}"
    await kernel.jobs.enqueue("sample.report_scope", tenant_id=a.id, key=key_a)
    await kernel.jobs.enqueue("sample.report_scope", tenant_id=b.id, key=key_b)
    outcome = await run_jobs()
    assert outcome.complete >= 2
    [report_a], [report_b] = await reports(kernel, key_a), await reports(kernel, key_b)
    assert report_a == {"tenant_id": str(a.id), "scope": str(a.id), "notes": 1, "try": 1}
    assert report_b["scope"] == str(b.id)
    assert report_b["notes"] == 1  # its own welcome note only: the session is scoped to the tenant


async def test_failed_job_is_retried_with_backoff_then_succeeds(kernel: Any, make_tenant: Any, run_jobs: Any) -> None:
    tenant = await make_tenant()
    key = f"test:{secrets.token_hex(4)}"
    job_id = await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=key, fail_tries=2)
    outcome = await run_jobs()
    assert outcome.retried >= 2
    assert [r["try"] for r in await reports(kernel, key)] == [1, 2, 3]
    result = await kernel.jobs.result(job_id)
    assert result is not None
    assert result.success
    assert result.result == 3


async def test_job_that_keeps_failing_stops_after_max_tries(kernel: Any, make_tenant: Any, run_jobs: Any) -> None:
    tenant = await make_tenant()
    key = f"test:{secrets.token_hex(4)}"
    job_id = await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=key, fail_tries=99)
    await run_jobs()
    assert len(await reports(kernel, key)) == 3
    result = await kernel.jobs.result(job_id)
    assert result is not None
    assert not result.success
    assert "failing try 3 on purpose" in result.result


async def test_job_longer_than_its_timeout_is_stopped(kernel: Any, make_tenant: Any, run_jobs: Any) -> None:
    tenant = await make_tenant()
    key = f"test:{secrets.token_hex(4)}"
    job_id = await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=key, sleep=5.0)
    await run_jobs()
    assert await reports(kernel, key) == []  # every try was cancelled before it reported
    result = await kernel.jobs.result(job_id)
    assert result is not None
    assert not result.success
    assert result.job_try == 3
    assert "JobTimedOut" in result.result


async def test_job_id_makes_enqueueing_idempotent_and_defer_delays(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    key = f"test:{secrets.token_hex(4)}"
    first = await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=key, _job_id=key, _defer_by=3600)
    again = await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=key, _job_id=key)
    assert first is not None
    assert again is None
    assert (await kernel.jobs.status(first)).value == "deferred"
    # Leave nothing behind for the other tests' run_jobs.
    await kernel.jobs.redis.zrem(kernel.jobs.redis.default_queue_name, first)


async def test_unknown_job_and_unserialisable_arguments_are_refused(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    with pytest.raises(LookupError, match=r"no job 'sample\.nope'"):
        await kernel.jobs.enqueue("sample.nope", tenant_id=tenant.id)
    with pytest.raises(NotImplementedError, match="object"):
        await kernel.jobs.enqueue("sample.report_scope", tenant_id=tenant.id, key=object())


def test_job_names_must_be_in_the_plugins_namespace() -> None:
    from inopsio import hookimpl

    class Rogue:
        INOPSIO_PLUGIN_NAME = "rogue"

        @hookimpl
        def register_jobs(self, register: Any) -> None:
            async def steal(ctx: Any) -> None:
                return None

            register(steal, name="kernel.send_mail")

    registry = build_plugin_manager([], [Rogue()], load_entry_points=False)
    with pytest.raises(PluginError, match=r"plugin 'rogue', hook register_jobs: job name 'kernel.send_mail'"):
        collect_jobs(registry, load_settings({}))


def test_kernel_registers_mail_delivery_and_usage_flush() -> None:
    registry = build_plugin_manager([], load_entry_points=False)
    jobs = collect_jobs(registry, load_settings({}, usage_flush_seconds=10))
    assert jobs["kernel.send_mail"].cron is None
    assert jobs["kernel.flush_usage"].cron == {"second": {0, 10, 20, 30, 40, 50}}
