"""Faults with real processes: a worker killed mid-job, a web process killed between its commit and the
event's dispatch, and Redis going away for a while. ``inopsio worker`` and ``inopsio serve`` run as
subprocesses on the session's database and Redis namespace; the Redis outage uses a Redis of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from inopsio.events.models import Delivery, PendingEvent
from inopsio.settings import Settings
from inopsio_sample.models import NoteTag

INOPSIO = Path(sys.executable).parent / "inopsio"
START_TIMEOUT = 60.0
#: The job lease the worker subprocesses hold: a killed worker's job runs again this long after.
LEASE_SECONDS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The session's installation (database, Redis and its namespace, secret) as ``INOPSIO_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INOPSIO_")}
    assert settings.database_url
    assert settings.redis_url
    env.update(
        {
            "INOPSIO_ENVIRONMENT": settings.environment,
            "INOPSIO_DATABASE_URL": settings.database_url,
            "INOPSIO_REDIS_URL": settings.redis_url,
            "INOPSIO_REDIS_NAMESPACE": settings.redis_namespace,
            "INOPSIO_DATA_DIR": str(settings.data_dir),
            "INOPSIO_RUN_WORKER_IN_PROCESS": "false",
            "INOPSIO_TENANT_CACHE_SECONDS": "0",
            "INOPSIO_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "INOPSIO_LOG_LEVEL": "WARNING",
        }
    )
    optional = {
        "INOPSIO_DATABASE_APP_URL": settings.database_app_url,
        "INOPSIO_SECRET_KEY": settings.secret_key,
        "INOPSIO_PLUGINS": ",".join(settings.plugins) if settings.plugins is not None else None,
    }
    env.update({k: v for k, v in optional.items() if v is not None})
    env.update(extra)
    return env


class Process:
    """One ``inopsio`` subprocess in a session of its own, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(INOPSIO), *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer takes the process."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """``processes(["worker"], env)``: start an ``inopsio`` subprocess; every one is killed at the end."""
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str]) -> Process:
        process = Process(args, env, tmp_path / f"{args[0]}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


async def _eventually(
    check: Callable[[], Awaitable[Any]], seconds: float, what: str, on_fail: Callable[[], str] = str
) -> Any:
    """Poll ``check`` until it returns something truthy; ``on_fail()`` explains a failure."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:g} s\n{on_fail()}")
        await asyncio.sleep(0.1)


async def _tags(kernel: Any, tenant_id: UUID, note_id: UUID | str, tag: str) -> int:
    async with kernel.db.session(tenant_id) as session:
        query = select(func.count()).select_from(NoteTag).where(NoteTag.note_id == note_id, NoteTag.tag == tag)
        return int((await session.execute(query)).scalar_one())


async def _pending(kernel: Any, event_id: UUID | str) -> bool:
    async with kernel.db.session(None) as session:
        found = await session.execute(select(PendingEvent.event_id).where(PendingEvent.event_id == event_id))
        return found.first() is not None


async def _note(kernel: Any, tenant_id: UUID) -> UUID:
    """The id of the tenant's welcome note."""
    from inopsio_sample.models import Note

    async with kernel.db.session(tenant_id) as session:
        return UUID(str((await session.execute(select(Note.id).limit(1))).scalar_one()))


# -- 1. a worker killed in the middle of a job ------------------------------------------------------------


async def _blpop(redis: Any, key: str, seconds: float) -> Any:
    """BLPOP for up to ``seconds``, one second at a time: one long blocking read would outlast the
    client's socket timeout (5 s) while a worker process is still starting on a busy machine."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        popped = await redis.blpop([key], timeout=1)
        if popped is not None:
            return popped
    return None


async def test_a_job_whose_worker_is_killed_mid_run_completes_after_a_restart_and_its_effect_happens_once(
    kernel: Any, inopsio_settings: Settings, make_tenant: Any, processes: Callable[..., Process]
) -> None:
    tenant = await make_tenant()
    note_id = await _note(kernel, tenant.id)
    started, hold = f"test:started:{secrets.token_hex(4)}", f"test:hold:{secrets.token_hex(4)}"
    env = _environment(inopsio_settings, INOPSIO_DISPATCH_EVENTS="false")

    first = processes(["worker"], env)
    job_id = await kernel.jobs.enqueue(
        "sample.tag_note", tenant_id=tenant.id, note_id=str(note_id), tag="killed", started=started, hold=hold
    )
    # The first try has written its row (uncommitted) and waits on ``hold``: it is provably mid-job.
    popped = await _blpop(kernel.redis, started, START_TIMEOUT)
    assert popped is not None, f"the job never started:\n{first.output()}"
    assert popped[1] == b"1"
    assert (await kernel.jobs.status(job_id)).value == "in_progress"
    first.kill()
    assert await _tags(kernel, tenant.id, note_id, "killed") == 0  # the killed try's transaction is gone

    await kernel.redis.rpush(hold, "go")  # the next try need not wait
    second = processes(["worker"], env)
    result = await _eventually(
        lambda: kernel.jobs.result(job_id), START_TIMEOUT, "the job's completion", on_fail=second.output
    )
    assert result.success, result.result
    assert result.result == 2, "the job ran again as its second try"
    assert await kernel.redis.lrange(started, 0, -1) == [b"2"]
    assert await _tags(kernel, tenant.id, note_id, "killed") == 1


# -- 2. the web process killed after its commit, before the dispatch --------------------------------------


async def test_an_event_committed_by_a_web_process_killed_before_dispatching_is_delivered_by_a_worker(
    kernel: Any, inopsio_settings: Settings, make_tenant: Any, sign_in: Any, processes: Callable[..., Process]
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant, "member")
    port = _free_port()
    web = processes(["serve", "--port", str(port)], _environment(inopsio_settings, INOPSIO_DISPATCH_EVENTS="false"))
    url = f"http://127.0.0.1:{port}"

    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def ready() -> bool:
            if web.process.poll() is not None:
                pytest.fail(f"inopsio serve exited with {web.process.returncode}:\n{web.output()}")
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/health/ready")).status_code == 200
            return False

        await _eventually(ready, START_TIMEOUT, "inopsio serve's readiness", on_fail=web.output)
        response = await http.post("/api/v1/sample/notes", json={"title": "Before the crash"}, headers=headers)
    assert response.status_code == 201, response.text  # committed, with its event in the outbox
    note_id = response.json()["id"]
    web.kill()

    async with kernel.db.session(tenant.id) as session:
        from inopsio.events.models import EventRecord

        event_id = (
            await session.execute(select(EventRecord.id).where(EventRecord.data["note_id"].astext == note_id))
        ).scalar_one()
    assert await _pending(kernel, event_id), "the event is waiting in the outbox"
    assert await _tags(kernel, tenant.id, note_id, "new") == 0, "nothing dispatched it yet"

    worker = processes(["worker"], _environment(inopsio_settings))  # its dispatcher is on
    await _eventually(
        lambda: _negate(_pending(kernel, event_id)), START_TIMEOUT, "the event's delivery", on_fail=worker.output
    )
    assert await _tags(kernel, tenant.id, note_id, "new") == 1
    async with kernel.db.session(tenant.id) as session:
        deliveries = (await session.execute(select(Delivery).where(Delivery.event_id == event_id))).scalars().all()
    statuses = {d.handler: (d.status, d.attempts) for d in deliveries}
    assert statuses["sample.tag_new_note"] == ("done", 1)
    assert all(status == "done" for status, _ in statuses.values()), statuses


async def _negate(value: Awaitable[Any]) -> bool:
    return not await value


# -- 3. Redis unavailable for a while -----------------------------------------------------------------------


class RedisServer:
    """A Redis of the test's own on a fixed port, which it stops and starts again."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Receiver:
    """A real HTTP server recording every POST, answering 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def redis_app(inopsio_migrated: Settings, own_redis: RedisServer) -> AsyncIterator[Any]:
    """An app on the session's database and the test's own Redis, started in the tests' loop."""
    from inopsio.app import create_app

    settings = msgspec.structs.replace(inopsio_migrated, redis_url=own_redis.url)
    app = create_app(settings)
    # As ``inopsio_app`` does: one task holds the lifespan, since the fixture ends in another task.
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(hold_lifespan())
    await asyncio.wait([lifespan, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if lifespan.done():
        lifespan.result()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{settings.base_domain}") as client:
            app.state.test_client = client
            yield app
    finally:
        stop.set()
        await lifespan


async def test_without_redis_the_api_answers_and_events_wait_in_the_outbox_until_it_returns(
    redis_app: Any, own_redis: RedisServer, make_tenant: Any
) -> None:
    from inopsio.jobs import drain

    kernel, client = redis_app.state.kernel, redis_app.state.test_client
    tenant = await make_tenant()
    email, password = f"admin-{secrets.token_hex(4)}@example.com", f"pass phrase {secrets.token_hex(8)}"
    await kernel.identity.accounts.create_member(tenant, email, password, "admin", verified=True)
    # Signing in needs Redis (its brute-force throttle), so it happens before the outage.
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": tenant.slug}
    )
    assert login.status_code == 200, login.text
    headers = {"X-Tenant": tenant.slug, "Authorization": f"Bearer {login.json()['access_token']}"}
    receiver = Receiver()
    subscription = {"url": receiver.url, "event_types": ["sample.note.*"]}
    created = await client.post("/api/v1/webhooks", json=subscription, headers=headers)
    try:
        assert created.status_code == 201, created.text

        own_redis.stop()
        # What needs no Redis keeps answering.
        tenant_info = await client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})
        assert tenant_info.status_code == 200, tenant_info.text
        assert tenant_info.json()["id"] == str(tenant.id)
        written = await client.post("/api/v1/sample/notes", json={"title": "Written blind"}, headers=headers)
        assert written.status_code == 201, written.text
        note_id = written.json()["id"]
        read = await client.get(f"/api/v1/sample/notes/{note_id}", headers=headers)
        assert read.status_code == 200, read.text
        listed = await client.get("/api/v1/sample/notes", headers=headers)
        assert listed.status_code == 200
        assert note_id in {n["id"] for n in listed.json()}
        # Signing in needs the brute-force throttle's counts: it is refused, plainly, until Redis returns.
        again = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": tenant.slug}
        )
        assert again.status_code == 503, again.text
        assert again.json()["type"].endswith("login-unavailable")
        assert "Retry-After" in again.headers

        # The dispatcher runs what it can: the sample handler is done, the webhook fan-out cannot
        # enqueue its delivery job and waits, with backoff, in the outbox.
        await kernel.events.dispatch_once(kernel)
        assert await _tags(kernel, tenant.id, note_id, "new") == 1
        async with kernel.db.session(tenant.id) as session:
            from inopsio.events.models import EventRecord

            event_id = (
                await session.execute(select(EventRecord.id).where(EventRecord.data["note_id"].astext == note_id))
            ).scalar_one()
            deliveries = {
                d.handler: d
                for d in (await session.execute(select(Delivery).where(Delivery.event_id == event_id))).scalars()
            }
        assert deliveries["sample.tag_new_note"].status == "done"
        [webhook_handler] = [h for h in deliveries if h != "sample.tag_new_note"]
        waiting = deliveries[webhook_handler]
        assert (waiting.status, waiting.attempts) == ("retrying", 1), waiting.last_error
        assert waiting.next_attempt_at is not None
        assert await _pending(kernel, event_id)

        own_redis.start()  # empty: whatever the outage lost, the outbox still has
        await _eventually(lambda: _dispatched(kernel, event_id), 15, "the webhook fan-out after Redis returned")
        # A real worker on that Redis. The dispatcher may also have fanned out other tests' leftover
        # events, whose retries could outlast the drain: what matters is this event's delivery.
        with contextlib.suppress(TimeoutError):
            await drain(kernel, max_seconds=15)
        assert [b["id"] for b in receiver.bodies] == [str(event_id)]
        assert await _tags(kernel, tenant.id, note_id, "new") == 1
        async with kernel.db.session(tenant.id) as session:
            statuses = {
                d.handler: (d.status, d.attempts)
                for d in (await session.execute(select(Delivery).where(Delivery.event_id == event_id))).scalars()
            }
        assert statuses == {"sample.tag_new_note": ("done", 1), webhook_handler: ("done", 2)}
    finally:
        receiver.close()


async def _dispatched(kernel: Any, event_id: UUID) -> bool:
    await kernel.events.dispatch_once(kernel)
    return not await _pending(kernel, event_id)
