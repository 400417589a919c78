"""pytest plugin (entry point ``pytest11``): the fixtures Inopsio's own tests use, for plugin authors too.

Fixtures (all talk to real PostgreSQL and Redis: the configured ones, else embedded):

- ``inopsio_settings`` (session): settings pointing at a fresh database created for the run.
- ``inopsio_plugins`` (session): which installed plugins load; override it in your ``conftest.py``.
- ``inopsio_migrated`` (session): the database upgraded to every branch's head.
- ``inopsio_app`` (session): a started app; ``client``: an async HTTP client on it.
- ``kernel``: the app's kernel (database, Redis, tenants, quotas).
- ``make_tenant``: ``await make_tenant()`` creates a tenant with a unique slug.
- ``sign_in``: ``await sign_in(tenant, role)`` gives headers of a signed-in member of that role.
- ``drain_events``: ``await drain_events()`` delivers pending events (no background dispatcher in tests).
- ``operator_headers``: an ``Authorization`` header for the platform operator API.
- ``live_server`` (session): the session's app served by uvicorn on a free local port, in the tests'
  loop (same kernel as ``kernel``); ``live_server.url`` / ``live_server.ws_url``, for real WebSocket
  and HTTP clients.
- ``run_jobs``: ``await run_jobs()`` runs every queued job (and the retries it schedules) with a
  real arq worker in the tests' loop, until the queue is empty.
- ``smtp_sink``: the real SMTP server (aiosmtpd) the test app sends mail to, emptied for each test;
  ``smtp_sink.to(address)`` gives the parsed messages.

Async tests and fixtures share one event loop per session (pytest-asyncio).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
import pytest_asyncio

from inopsio.settings import Settings, load_settings
from inopsio.testing.services import redis_url, scratch_database, server_url

#: The browser fixtures (``chromium``, ``browser``, ``assert_accessible``) come with this plugin.
pytest_plugins = ["inopsio.testing.browser"]

if TYPE_CHECKING:
    from inopsio.testing.smtp import SmtpSink


@pytest.fixture(scope="session")
def inopsio_plugins() -> list[str] | None:
    """Installed plugins to load (entry-point names); ``None`` loads every installed plugin."""
    return None


@pytest.fixture(scope="session")
def inopsio_extra_plugins() -> list[object]:
    """Plugin objects or module names to register besides installed ones (not installed yet)."""
    return []


@pytest.fixture(scope="session")
def inopsio_database_url() -> Iterator[str]:
    with scratch_database(server_url()) as url:
        yield url


@pytest.fixture(scope="session")
def inopsio_smtp_server() -> Iterator[SmtpSink]:
    """The session's SMTP server; the test settings point the app at it before the app starts."""
    from inopsio.testing.smtp import SmtpSink  # aiosmtpd: the ``testing`` extra of inopsio-core

    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def inopsio_settings(
    inopsio_database_url: str, inopsio_plugins: list[str] | None, inopsio_smtp_server: SmtpSink
) -> Settings:
    return load_settings(
        {},
        environment="test",
        database_url=inopsio_database_url,
        redis_url=redis_url(),
        redis_namespace=f"inopsio-test-{secrets.token_hex(4)}",
        plugins=inopsio_plugins,
        tenant_cache_seconds=0.0,
        usage_flush_seconds=3600.0,
        # Tests deliver events deterministically with ``drain_events``.
        dispatch_events=False,
        smtp_host=inopsio_smtp_server.host,
        smtp_port=inopsio_smtp_server.port,
        smtp_starttls=False,
        run_worker_in_process=False,
        # Webhook retries a fraction of a second apart, so ``run_jobs`` sees them through quickly.
        webhook_retry_base_seconds=0.2,
    )


@pytest.fixture(scope="session")
def inopsio_registry(inopsio_settings: Settings, inopsio_extra_plugins: list[object]) -> Any:
    from inopsio.plugins import build_plugin_manager

    return build_plugin_manager(inopsio_settings.plugins, inopsio_extra_plugins)


@pytest.fixture(scope="session")
def inopsio_migrated(inopsio_settings: Settings, inopsio_registry: Any) -> Settings:
    from inopsio import migrate

    migrate.upgrade(inopsio_settings, inopsio_registry)
    return inopsio_settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def inopsio_app(inopsio_migrated: Settings, inopsio_extra_plugins: list[object]) -> AsyncIterator[Any]:
    import httpx

    from inopsio.app import create_app

    app = create_app(inopsio_migrated, plugins=inopsio_extra_plugins)
    # The app runs in the tests' own event loop, so a test may use the kernel's Redis and database
    # clients directly: Litestar's test client runs the app in a thread with a loop of its own, and
    # those clients' connections would then belong to two loops. The lifespan (start-up and shutdown
    # hooks) runs once around the session, held open by one task because pytest-asyncio tears a
    # fixture down in another task than it set it up in, and a task group must be left by its task.
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(hold_lifespan())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait([lifespan, waiting], return_when=asyncio.FIRST_COMPLETED)
    if lifespan.done():
        waiting.cancel()
        lifespan.result()  # start-up failed: raise its error
    # Litestar's precise ASGI types are narrower than httpx's generic ASGI signature.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{inopsio_migrated.base_domain}") as client:
            app.state.test_client = client
            yield app
    finally:
        stop.set()
        await lifespan


class LiveServer:
    """Where the ``live_server`` fixture listens."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def live_server(inopsio_app: Any) -> AsyncIterator[LiveServer]:
    import contextlib
    import socket

    import uvicorn

    class InProcessServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handling
            yield

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    # The app's lifespan is already held open by ``inopsio_app``: the server shares its kernel.
    config = uvicorn.Config(inopsio_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = InProcessServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the live server stopped while starting")
        await asyncio.sleep(0.02)
    try:
        yield LiveServer("127.0.0.1", port)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def kernel(inopsio_app: Any) -> Any:
    return inopsio_app.state.kernel


@pytest.fixture
def client(inopsio_app: Any) -> Any:
    """An async HTTP client on the app; send ``X-Tenant`` or a tenant ``Host`` to talk to a tenant."""
    return inopsio_app.state.test_client


@pytest.fixture
def make_tenant(kernel: Any) -> Callable[..., Awaitable[Any]]:
    """``await make_tenant(name=..., settings=..., slug=...)``: a new active tenant."""
    from inopsio.tenancy.schemas import TenantCreate

    async def make(slug: str | None = None, name: str = "Test Tenant", **fields: Any) -> Any:
        data = msgspec.convert({"slug": slug or f"t-{secrets.token_hex(5)}", "name": name, **fields}, TenantCreate)
        return await kernel.tenants.create(data)

    return make


@pytest.fixture
def drain_events(kernel: Any) -> Callable[[], Awaitable[int]]:
    """``await drain_events()``: deliver every pending event due now; returns how many were handled."""

    async def drain() -> int:
        total = 0
        while handled := await kernel.events.dispatch_once(kernel):
            total += handled
        return total

    return drain


@pytest.fixture
def sign_in(kernel: Any, client: Any) -> Callable[..., Awaitable[dict[str, str]]]:
    """``await sign_in(tenant, role="member")``: headers of a new member signed in to ``tenant``.

    The headers carry ``X-Tenant`` and a bearer access token obtained through the real sign-in API.
    """

    async def make(tenant: Any, role: str = "owner", email: str | None = None) -> dict[str, str]:
        email = email or f"{role}-{secrets.token_hex(5)}@example.com"
        password = f"test passphrase {secrets.token_hex(8)}"
        await kernel.identity.accounts.create_member(tenant, email, password, role, verified=True)
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": tenant.slug}
        )
        assert response.status_code == 200, response.text
        return {"X-Tenant": tenant.slug, "Authorization": f"Bearer {response.json()['access_token']}"}

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def operator_headers(kernel: Any) -> dict[str, str]:
    from inopsio.platform.auth import create_operator_token

    token = await create_operator_token(kernel.db, f"test-{secrets.token_hex(3)}")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def smtp_sink(inopsio_smtp_server: SmtpSink) -> SmtpSink:
    inopsio_smtp_server.clear()
    return inopsio_smtp_server


@pytest.fixture
def run_jobs(kernel: Any) -> Callable[..., Awaitable[Any]]:
    """``await run_jobs(max_seconds=60)``: drain the job queue; returns counts (complete, failed, retried).

    Mail committed by a request or a job reaches the queue just after its commit, from a task: the
    queue is drained again until no such task is left on its way.
    """
    from inopsio.jobs import DrainResult, drain

    async def run(max_seconds: float = 60.0) -> Any:
        await kernel.mail.settle()
        total = await drain(kernel, max_seconds=max_seconds)
        while await kernel.mail.settle():
            more = await drain(kernel, max_seconds=max_seconds)
            total = DrainResult(
                complete=total.complete + more.complete,
                failed=total.failed + more.failed,
                retried=total.retried + more.retried,
            )
        return total

    return run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``inopsio_tenant_table`` with every tenant-owned table of the loaded plugins, and
    ``inopsio_installed_plugin`` with the kernel and every installed plugin."""
    if "inopsio_installed_plugin" in metafunc.fixturenames:
        from inopsio.plugins import KERNEL, installed_entry_points

        names = [KERNEL, *sorted(installed_entry_points())]
        metafunc.parametrize("inopsio_installed_plugin", names, ids=names)
    if "inopsio_tenant_table" in metafunc.fixturenames:
        from inopsio.testing.conformance import discover_tenant_tables

        tables = discover_tenant_tables()
        metafunc.parametrize("inopsio_tenant_table", tables, ids=tables)
