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


async def tallies(kernel: Any, tenant_id: Any) -> list[dict[str, Any]]:
    from inopsio_sample.jobs import tally_key

    return await reports(kernel, tally_key(kernel.settings.redis_namespace, tenant_id))


async def test_per_tenant_job_runs_once_per_tenant_with_its_module_on(
    kernel: Any, make_tenant: Any, run_jobs: Any
) -> None:
    import datetime as dt

    from inopsio.jobs.tenants import fan_out

    on, other = await make_tenant(), await make_tenant()
    off = await make_tenant(settings={"disabled_modules": ["sample"]})
    suspended = await make_tenant()
    await kernel.tenants.suspend(suspended.id, "unpaid")
    scheduled = dt.datetime(2026, 3, 1, 4, 0, secrets.randbelow(60), tzinfo=dt.UTC)
    assert await fan_out(kernel, "sample.tally_notes", scheduled) >= 2
    # A second worker, or a retry of the fan-out, for the same scheduled run queues nothing more.
    assert await fan_out(kernel, "sample.tally_notes", scheduled) == 0
    outcome = await run_jobs()
    assert outcome.failed == 0
    await fan_out(kernel, "sample.tally_notes", scheduled)
    await run_jobs()
    for tenant in (on, other):
        # Each run sees its own tenant's welcome note only, with or without the ORM's tenant filter.
        assert await tallies(kernel, tenant.id) == [
            {"tenant_id": str(tenant.id), "scope": str(tenant.id), "notes": 1, "visible": 1}
        ]
    assert await tallies(kernel, off.id) == []
    assert await tallies(kernel, suspended.id) == []


async def test_a_failing_tenant_does_not_stop_the_others(kernel: Any, make_tenant: Any, run_jobs: Any) -> None:
    import datetime as dt

    from inopsio.jobs.tenants import fan_out
    from inopsio_sample.jobs import FAILING_TENANT_NAME

    failing, healthy = await make_tenant(name=FAILING_TENANT_NAME), await make_tenant()
    scheduled = dt.datetime(2026, 3, 2, 4, 0, secrets.randbelow(60), tzinfo=dt.UTC)
    await fan_out(kernel, "sample.tally_notes", scheduled)
    outcome = await run_jobs()
    assert outcome.failed >= 1
    assert outcome.retried >= 1  # the failing tenant's run has retries of its own
    assert await tallies(kernel, failing.id) == []
    assert [r["tenant_id"] for r in await tallies(kernel, healthy.id)] == [str(healthy.id)]


async def test_a_run_queued_before_its_tenant_switched_the_module_off_is_skipped(
    kernel: Any, make_tenant: Any, run_jobs: Any
) -> None:
    import datetime as dt

    from inopsio.jobs.tenants import fan_out
    from inopsio.tenancy.schemas import TenantSettingsPatch

    tenant = await make_tenant()
    await fan_out(kernel, "sample.tally_notes", dt.datetime(2026, 3, 3, 4, 0, secrets.randbelow(60), tzinfo=dt.UTC))
    await kernel.tenants.update_settings(tenant.id, TenantSettingsPatch(disabled_modules=["sample"]))
    await run_jobs()
    assert await tallies(kernel, tenant.id) == []


async def test_worker_schedules_the_fan_out_and_runs_tenant_runs(kernel: Any, make_tenant: Any) -> None:
    import datetime as dt

    from inopsio.jobs import build_worker

    tenant = await make_tenant()
    worker = build_worker(kernel, burst=True)
    try:
        [fan_out_cron] = [c for c in worker.cron_jobs if c.name.endswith("sample.tally_notes:fan-out")]
        assert "sample.tally_notes" in worker.functions  # the tenant runs themselves
        scheduled = dt.datetime(2026, 3, 4, 4, 0, secrets.randbelow(60), tzinfo=dt.UTC)
        # arq names a cron run <cron name>:<scheduled unix ms>: the fan-out reads its time from there.
        ctx = {"kernel": kernel, "job_id": f"{fan_out_cron.name}:{int(scheduled.timestamp() * 1000)}", "job_try": 1}
        assert await fan_out_cron.coroutine(ctx) >= 1
        assert await fan_out_cron.coroutine(ctx) == 0
        job_id = f"{kernel.settings.redis_namespace}:sample.tally_notes:{tenant.id}:{scheduled:%Y%m%dT%H%M%SZ}"
        assert (await kernel.jobs.status(job_id)).value == "queued"
    finally:
        await worker.close()


async def test_for_each_tenant_gives_each_tenant_its_own_transaction(kernel: Any, make_tenant: Any) -> None:
    from sqlalchemy import func, select, text

    from inopsio.jobs.tenants import TenantRunsFailed, for_each_tenant, tenant_session
    from inopsio_sample.models import Note

    ours = {(await make_tenant()).id for _ in range(2)}
    off = await make_tenant(settings={"disabled_modules": ["sample"]})
    broken = await make_tenant(name="Broken")

    async def add_note_and_count(tenant: Any, session: Any) -> int:
        session.add(Note(title="Visited", body=tenant.slug))
        await session.flush()
        if tenant.id == broken.id:
            raise RuntimeError("broken on purpose")
        return int((await session.execute(text("SELECT count(*) FROM sample_notes"))).scalar_one())

    with pytest.raises(TenantRunsFailed, match="1 of") as failure:
        await for_each_tenant(kernel, add_note_and_count, module="sample")
    assert set(failure.value.failed) == {broken.id}
    assert off.id not in failure.value.results
    for tenant_id in ours:
        assert failure.value.results[tenant_id] == 2  # its welcome note and the one just added
    # The broken tenant keeps only its welcome note; the one with the module off was never visited
    # (nor given a welcome note: on_tenant_created skips it too).
    for tenant_id, expected in ((broken.id, 1), (off.id, 0), *((t, 2) for t in ours)):
        async with tenant_session(kernel, tenant_id) as session:
            assert (await session.execute(select(func.count()).select_from(Note))).scalar_one() == expected


async def test_per_tenant_job_can_be_run_now_for_one_tenant_but_a_platform_cron_job_cannot(
    kernel: Any, make_tenant: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    await kernel.jobs.enqueue("sample.tally_notes", tenant_id=tenant.id)
    await run_jobs()
    assert len(await tallies(kernel, tenant.id)) == 1
    with pytest.raises(LookupError, match="cron job"):
        await kernel.jobs.enqueue("sample.tally_notes", tenant_id=None)
    with pytest.raises(LookupError, match="cron job"):
        await kernel.jobs.enqueue("kernel.flush_usage", tenant_id=tenant.id)


def test_per_tenant_needs_a_schedule() -> None:
    from inopsio import hookimpl

    class Unscheduled:
        INOPSIO_PLUGIN_NAME = "unscheduled"

        @hookimpl
        def register_jobs(self, register: Any) -> None:
            async def tally(ctx: Any) -> None:
                return None

            register(tally, name="unscheduled.tally", per_tenant=True)

    registry = build_plugin_manager([], [Unscheduled()], load_entry_points=False)
    with pytest.raises(PluginError, match=r"per_tenant=True .* needs cron"):
        collect_jobs(registry, load_settings({}))
