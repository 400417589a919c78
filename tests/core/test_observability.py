"""Observability: Prometheus metrics per route template, request ids in headers and JSON log lines,
traces that follow a request into its job, and the job-status API with progress."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar import get
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from inopsio import hookimpl
from inopsio.app import create_app
from inopsio.observability import Tracing, configure_logging
from inopsio.settings import Settings, load_settings

NOTE_ROUTE = "/api/v1/sample/notes/{note_id}"


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (0 when there is none)."""
    found = [v for n, lbls, v in samples(text) if n == name and labels.items() <= lbls.items()]
    return sum(found)


async def scrape(client: Any, **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return str(response.text)


@pytest_asyncio.fixture(loop_scope="session")
async def member(make_tenant: Any, sign_in: Any) -> tuple[Any, dict[str, str]]:
    tenant = await make_tenant()
    return tenant, await sign_in(tenant, "member")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log line of the test, as the JSON the CLI and the app write."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
def spans(kernel: Any) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kernel.observability.tracing.use(provider)
    try:
        yield exporter
    finally:
        kernel.observability.tracing.use(None)
        provider.shutdown()


# -- metrics ----------------------------------------------------------------------------------------


async def test_request_latency_is_counted_per_route_template_without_tenant_or_ids(
    client: Any, member: tuple[Any, dict[str, str]]
) -> None:
    tenant, headers = member
    before = await scrape(client)
    labels = {"route": NOTE_ROUTE, "method": "GET", "status": "2xx"}
    count_before = value(before, "inopsio_http_request_duration_seconds_count", **labels)
    note_ids = []
    for title in ("one", "two", "three"):
        created = await client.post("/api/v1/sample/notes/", json={"title": title}, headers=headers)
        assert created.status_code == 201, created.text
        note_ids.append(created.json()["id"])
    for note_id in note_ids:
        assert (await client.get(f"/api/v1/sample/notes/{note_id}", headers=headers)).status_code == 200
    assert (await client.get(f"/api/v1/sample/notes/{secrets.token_hex(4)}", headers=headers)).status_code >= 400

    text = await scrape(client)
    assert value(text, "inopsio_http_request_duration_seconds_count", **labels) == count_before + 3
    assert value(text, "inopsio_http_request_duration_seconds_bucket", le="+Inf", **labels) == count_before + 3
    assert value(text, "inopsio_http_request_duration_seconds_count", route="/api/v1/sample/notes", method="POST") >= 3
    assert value(text, "inopsio_http_request_duration_seconds_count", route="unmatched", status="4xx") >= 1
    assert "inopsio_http_requests_in_flight" in text
    assert "inopsio_websocket_connections" in text
    # Low cardinality: no raw paths, ids or tenants in any label.
    assert tenant.slug not in text
    assert str(tenant.id) not in text
    assert not any(note_id in text for note_id in note_ids)
    routes = {lbls["route"] for n, lbls, _ in samples(text) if "route" in lbls}
    assert all("{" in r or not re.search(r"[0-9a-f]{8}-", r) for r in routes)


async def test_unknown_http_methods_share_one_label(client: Any) -> None:
    await client.request("BREW", "/health/live")
    text = await scrape(client)
    assert "BREW" not in text
    assert value(text, "inopsio_http_request_duration_seconds_count", method="OTHER") >= 1


async def test_metrics_need_the_token_when_one_is_set(client: Any, kernel: Any, monkeypatch: Any) -> None:
    token = secrets.token_urlsafe(24)
    monkeypatch.setattr(kernel, "settings", msgspec.structs.replace(kernel.settings, metrics_token=token))
    refused = await client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:inopsio:problem:metrics-token-required"
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert "inopsio_http_request_duration_seconds" in await scrape(client, Authorization=f"Bearer {token}")


async def test_job_durations_and_failures_are_counted_per_job(
    client: Any, kernel: Any, make_tenant: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    before = await scrape(client)
    await kernel.jobs.enqueue(
        "sample.report_scope", tenant_id=tenant.id, key=f"test:{secrets.token_hex(4)}", fail_tries=1
    )
    await run_jobs()
    text = await scrape(client)
    job = "sample.report_scope"
    for outcome in ("complete", "retry"):
        name = "inopsio_job_duration_seconds_count"
        assert value(text, name, job=job, outcome=outcome) >= value(before, name, job=job, outcome=outcome) + 1
    assert (
        value(text, "inopsio_job_failures_total", job=job) >= value(before, "inopsio_job_failures_total", job=job) + 1
    )


async def test_delivered_events_and_the_outbox_are_measured(
    client: Any, member: tuple[Any, dict[str, str]], drain_events: Any
) -> None:
    _, headers = member
    await drain_events()
    before = await scrape(client)
    assert (await client.post("/api/v1/sample/notes/", json={"title": "event"}, headers=headers)).status_code == 201
    waiting = await scrape(client)
    assert value(waiting, "inopsio_outbox_pending_events") >= 1
    await drain_events()
    text = await scrape(client)
    assert value(text, "inopsio_events_delivered_total") >= value(before, "inopsio_events_delivered_total") + 1
    assert value(text, "inopsio_outbox_pending_events") == 0
    assert value(text, "inopsio_outbox_lag_seconds") >= 0
    assert "inopsio_outbox_oldest_due_seconds" in text


# -- request ids and logs ---------------------------------------------------------------------------


async def test_request_id_is_taken_from_the_client_or_made_and_always_echoed(client: Any) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "req-42.abc:1"})
    assert given.headers["x-request-id"] == "req-42.abc:1"
    made = await client.get("/health/live")
    other = await client.get("/health/live")
    assert made.headers["x-request-id"]
    assert made.headers["x-request-id"] != other.headers["x-request-id"]
    for bad in ("has space", "x" * 200, "semi;colon"):
        response = await client.get("/health/live", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert re.fullmatch(r"[A-Za-z0-9._:\-]+", response.headers["x-request-id"])
    refused = await client.get("/api/v1/sample/notes/", headers={"X-Tenant": "no-such-tenant", "X-Request-ID": "r-1"})
    assert refused.status_code >= 400
    assert refused.headers["x-request-id"] == "r-1"


async def test_log_lines_carry_request_id_tenant_and_user_into_the_job(
    client: Any, member: tuple[Any, dict[str, str]], run_jobs: Any, json_log: io.StringIO
) -> None:
    tenant, headers = member
    me = (await client.get("/api/v1/me", headers=headers)).json()
    request_id = f"req-{secrets.token_hex(6)}"
    response = await client.post(
        "/api/v1/sample/note-counts", json={"steps": 2}, headers={**headers, "X-Request-ID": request_id}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    await run_jobs()
    lines = log_lines(json_log)
    [queued] = [line for line in lines if line["event"] == f"queued note count {job_id}"]
    assert queued["request_id"] == request_id
    assert queued["tenant"] == tenant.slug
    assert queued["user_id"] == str(me["user_id"])
    assert queued["level"] == "info"
    assert queued["logger"] == "inopsio_sample"
    assert "timestamp" in queued
    steps = [line for line in lines if line["event"].startswith("counting notes")]
    assert len(steps) == 2
    for line in steps:
        # The job's lines name the job, its tenant and the request that queued it.
        assert line["job_id"] == job_id
        assert line["job"] == "sample.count_notes"
        assert line["tenant"] == tenant.slug
        assert line["request_id"] == request_id


def test_console_log_format_is_for_people(json_log: io.StringIO) -> None:
    stream = io.StringIO()
    handler = configure_logging("console", "INFO", stream=stream)
    try:
        logging.getLogger("inopsio.test").info("hello %s", "there")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "hello there" in output
    assert not output.lstrip().startswith("{")
    assert json_log.getvalue() == ""  # configuring again replaced the JSON handler


def test_log_format_is_json_in_production_and_console_elsewhere() -> None:
    assert load_settings({}).effective_log_format == "console"
    production = load_settings({}, environment="production", secret_key="s" * 40)
    assert production.effective_log_format == "json"
    assert load_settings({}, log_format="json").effective_log_format == "json"


class CrashPlugin:
    INOPSIO_PLUGIN_NAME = "crash"

    @staticmethod
    @get("/api/v1/crash/now", opt={"tenancy": "none"})
    async def crash() -> None:
        raise RuntimeError("boom")

    @hookimpl
    def register_routes(self, register: Any) -> None:
        register(self.crash)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def crash_client(inopsio_migrated: Settings) -> AsyncIterator[Any]:
    app = create_app(inopsio_migrated, plugins=[CrashPlugin()])
    async with AsyncTestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


async def test_internal_error_document_quotes_the_request_id(crash_client: Any) -> None:
    response = await crash_client.get("/api/v1/crash/now", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "crash-1"
    assert response.headers["x-request-id"] == "crash-1"
    text = (await crash_client.get("/metrics")).text
    assert value(text, "inopsio_http_request_duration_seconds_count", route="/api/v1/crash/now", status="5xx") == 1


# -- traces -----------------------------------------------------------------------------------------


async def test_a_request_and_the_job_it_enqueues_share_one_trace(
    client: Any, member: tuple[Any, dict[str, str]], run_jobs: Any, spans: InMemorySpanExporter
) -> None:
    _, headers = member
    response = await client.post("/api/v1/sample/note-counts", json={"steps": 1}, headers=headers)
    assert response.status_code == 202
    await run_jobs()
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.name == "POST /api/v1/sample/note-counts"]
    [job] = [s for s in finished if s.name == "job sample.count_notes"]
    assert request.kind == SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/v1/sample/note-counts"
    assert request.attributes["http.response.status_code"] == 202
    assert job.kind == SpanKind.CONSUMER
    assert request.context is not None
    assert job.context is not None
    assert job.context.trace_id == request.context.trace_id
    assert job.parent is not None
    assert job.parent.span_id == request.context.span_id


async def test_a_request_continues_the_callers_trace(client: Any, spans: InMemorySpanExporter) -> None:
    trace_id = secrets.token_hex(16)
    parent = secrets.token_hex(8)
    await client.get("/health/live", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    [span] = [s for s in spans.get_finished_spans() if s.name == "GET /health/live"]
    assert span.context is not None
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent


async def test_tracing_is_off_by_default(kernel: Any) -> None:
    assert kernel.settings.otel_exporter == "none"
    assert kernel.observability.tracing.tracer is None


def test_console_exporter_is_configured_from_settings() -> None:
    tracing = Tracing.from_settings(load_settings({}, otel_exporter="console"))
    try:
        assert tracing.tracer is not None
    finally:
        tracing.shutdown()


# -- job status and progress ------------------------------------------------------------------------


async def test_job_progress_is_visible_to_its_tenant_only(
    client: Any, kernel: Any, member: tuple[Any, dict[str, str]], make_tenant: Any, sign_in: Any, run_jobs: Any
) -> None:
    _, headers = member
    outsider = await sign_in(await make_tenant(), "owner")
    hold = f"test:hold:{secrets.token_hex(4)}"
    response = await client.post("/api/v1/sample/note-counts", json={"steps": 4, "hold": hold}, headers=headers)
    job_id = response.json()["job_id"]

    queued = (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
    assert queued["status"] == "queued"
    assert queued["progress"] == 0
    assert queued["name"] == "sample.count_notes"

    worker = asyncio.create_task(run_jobs())
    try:
        state: dict[str, Any] = {}
        for _ in range(200):
            state = (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
            if state["progress"] == 50:
                break
            await asyncio.sleep(0.02)
        assert state["status"] == "in_progress", state
        assert state["progress"] == 50
        assert state["message"] == "step 3 of 4"
        assert state["tries"] == 1
        # Another tenant cannot see it, nor tell it from a job that does not exist.
        hidden = await client.get(f"/api/v1/jobs/{job_id}", headers=outsider)
        missing = await client.get(f"/api/v1/jobs/{secrets.token_hex(16)}", headers=outsider)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["type"] == missing.json()["type"] == "urn:inopsio:problem:job-not-found"
    finally:
        await kernel.redis.rpush(hold, "go")
        await worker
    done = (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
    assert done["status"] == "complete"
    assert done["progress"] == 100
    assert re.fullmatch(r"\d+ notes", done["message"])
    assert (await client.get(f"/api/v1/jobs/{job_id}")).status_code == 400  # no tenant


async def test_failed_job_reports_failed(
    client: Any, kernel: Any, member: tuple[Any, dict[str, str]], run_jobs: Any
) -> None:
    tenant, headers = member
    job_id = await kernel.jobs.enqueue(
        "sample.report_scope", tenant_id=tenant.id, key=f"test:{secrets.token_hex(4)}", fail_tries=99
    )
    await run_jobs()
    state = (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
    assert state["status"] == "failed"
    assert state["tries"] == 3


def test_console_tracebacks_show_no_local_variables() -> None:
    """A traceback in the console log names the error, never the frames' variables (passwords, tokens)."""
    import io
    import logging

    from inopsio.observability.logs import configure_logging

    buffer = io.StringIO()
    handler = configure_logging("console", "INFO", stream=buffer)

    def sign_in() -> None:
        password = "hunter2-correct-horse"  # noqa: F841 - a local the traceback must not show
        raise ValueError("boom")

    try:
        sign_in()
    except ValueError:
        logging.getLogger("inopsio.test").exception("sign-in failed")
    finally:
        logging.getLogger().removeHandler(handler)
    logged = buffer.getvalue()
    assert "ValueError: boom" in logged
    assert "hunter2" not in logged
