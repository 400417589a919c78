"""The app factory: builds the plugin manager, collects every plugin's contributions, returns Litestar."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar, Request, Router
from litestar.config.compression import CompressionConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RapidocRenderPlugin
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio import __version__
from inopsio.automation import NodeType
from inopsio.db.base import Base
from inopsio.db.engine import Database
from inopsio.db.reader import TenantReader
from inopsio.db.roles import app_url_from_owner_url, check_app_role
from inopsio.embedded import ensure_services
from inopsio.errors import Problem, exception_handlers
from inopsio.events.bus import EventBus
from inopsio.events.schemas import ANY_MEMBER, EventHandler, EventType
from inopsio.identity.authentication import MODULE_OPT, AuthenticationMiddleware
from inopsio.identity.rbac import Permission
from inopsio.identity.services import Identity
from inopsio.jobs import JobQueue, collect_jobs, run_worker
from inopsio.kernel import Kernel
from inopsio.mail.service import MailService, collect_mail_templates
from inopsio.observability import Observability, configure_logging
from inopsio.plugins import KERNEL, PluginError, PluginRegistry, build_plugin_manager
from inopsio.quotas.services import QuotaService
from inopsio.settings import Settings, load_settings
from inopsio.tenancy.resolution import STATE_KEY, TenantResolutionMiddleware
from inopsio.tenancy.schemas import TenantInfo
from inopsio.tenancy.services import TenantService
from inopsio.web.registry import WebRegistry

log = logging.getLogger("inopsio")
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Sent with every HTTP response that does not set them itself (a page with its own policy keeps it).
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
        "connect-src 'self'; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
        "form-action 'self'",
    ),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
]


def collect_models(registry: PluginRegistry) -> list[tuple[str, type]]:
    def validate(plugin: str, model: Any) -> None:
        if not (isinstance(model, type) and issubclass(model, Base)):
            raise ValueError(f"{model!r} is not a model class derived from inopsio.db.Base")

    return registry.collect("register_models", validate)


def collect_migrations(registry: PluginRegistry) -> list[tuple[str, tuple[Path, str]]]:
    branches: list[tuple[str, tuple[Path, str]]] = []
    for plugin, (args, kwargs) in (
        (p, item if isinstance(item, tuple) else ((item,), {})) for p, item in registry.collect("register_migrations")
    ):
        location = Path(kwargs.get("location", args[0] if args else ""))
        label = str(kwargs.get("branch_label", args[1] if len(args) > 1 else ""))
        if not location.is_dir():
            raise PluginError(f"plugin {plugin!r}, hook register_migrations: {location} is not a folder")
        if not label:
            raise PluginError(f"plugin {plugin!r}, hook register_migrations: a branch label is required")
        branches.append((plugin, (location, label)))
    return branches


def _route_paths(handler: Any) -> list[str]:
    paths = getattr(handler, "paths", None)
    if paths:
        return [str(p) for p in paths]
    path = getattr(handler, "path", None)
    return [str(path)] if path else []


def collect_routers(registry: PluginRegistry, settings: Settings) -> list[Router]:
    """One router per plugin; a plugin's routes stay in its namespace and are off where it is off."""
    per_plugin: dict[str, list[Any]] = {}

    def validate(plugin: str, handler: Any) -> None:
        if registry.infos[plugin].is_kernel:
            return
        allowed = (f"/api/v1/{plugin}", f"/{plugin}")
        for path in _route_paths(handler):
            normalised = "/" + path.strip("/")
            if not any(normalised == a or normalised.startswith(a + "/") for a in allowed):
                raise ValueError(f"route {path!r} is outside the plugin's namespace ({' or '.join(allowed)})")

    for plugin, handler in registry.collect("register_routes", validate, settings=settings):
        per_plugin.setdefault(plugin, []).append(handler)
    routers = []
    for plugin, handlers in per_plugin.items():
        module = registry.module_of(plugin)
        # The module switch is checked with the access rules (identity.authentication.check_route).
        routers.append(Router(path="/", route_handlers=handlers, opt={MODULE_OPT: module}))
    return routers


async def provide_kernel(request: Request[Any, Any, Any]) -> Kernel:
    return request.app.state.kernel  # type: ignore[no-any-return]


async def provide_tenant(request: Request[Any, Any, Any]) -> TenantInfo:
    tenant: TenantInfo | None = request.scope.get("state", {}).get(STATE_KEY)
    if tenant is None:
        base = request.app.state.kernel.settings.base_domain
        raise Problem(
            400,
            "tenant-required",
            f"This endpoint belongs to a tenant: call it on <tenant>.{base} or send an X-Tenant header.",
        )
    return tenant


async def provide_db_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """The request's database session: one transaction scoped to the request's tenant."""
    # Reads the kernel and tenant itself rather than through two more injected dependencies:
    # this runs on nearly every request.
    tenant = await provide_tenant(request)
    async with request.app.state.kernel.db.session(tenant.id) as session:
        yield session


async def provide_db_reader(request: Request[Any, Any, Any]) -> TenantReader:
    """One-round-trip reads scoped to the request's tenant (see :mod:`inopsio.db.reader`)."""
    tenant = await provide_tenant(request)
    return request.app.state.kernel.db.reader(tenant.id)  # type: ignore[no-any-return]


def build_kernel(settings: Settings, registry: PluginRegistry) -> Kernel:
    if not (settings.database_url and settings.redis_url):
        raise ValueError("database_url and redis_url must be set (ensure_services() fills them)")
    app_url = settings.database_app_url or app_url_from_owner_url(settings.database_url, settings.database_app_role)
    db = Database(app_url, settings.database_url, pool_size=settings.database_pool_size)
    redis = aioredis.from_url(  # type: ignore[no-untyped-call]
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    tenants = TenantService(db, redis, registry, settings)
    quotas = QuotaService(db, redis, settings.quotas, settings.redis_namespace)
    kernel = Kernel(settings=settings, plugins=registry, db=db, redis=redis, tenants=tenants, quotas=quotas)
    kernel.observability = Observability(settings)
    kernel.jobs = JobQueue(settings, redis.connection_pool, collect_jobs(registry, settings))

    def validate_check(plugin: str, item: Any) -> None:
        if not (isinstance(item, tuple) and len(item[0]) == 2 and callable(item[0][1])):
            raise ValueError("register(name, check) takes a name and an async callable")

    for plugin, ((name, check), _) in registry.collect("register_health_checks", validate_check):
        kernel.health_checks.append((plugin, str(name), check))
    kernel.identity = Identity(settings, db, redis, tenants, quotas, collect_permissions(registry))
    kernel.events = EventBus(
        db, redis, registry, settings.redis_namespace, *collect_events(registry, kernel.identity.authorizer.permissions)
    )
    kernel.mail = MailService(settings, kernel.jobs, db, kernel.events, collect_mail_templates(registry))
    kernel.node_types = collect_node_types(registry, kernel.events)
    return kernel


def collect_node_types(registry: PluginRegistry, events: EventBus) -> dict[str, tuple[str, NodeType]]:
    """Every plugin's workflow node types, named after their plugin; triggers name a declared event."""

    def validate(plugin: str, item: Any) -> None:
        if not isinstance(item, NodeType):
            raise ValueError("register() takes an inopsio.automation.NodeType")
        if registry.module_of(plugin) != "kernel" and not item.name.startswith(plugin + "."):
            raise ValueError(f"node type {item.name!r} must be named after the plugin ({plugin}.…)")

    node_types: dict[str, tuple[str, NodeType]] = {}
    for plugin, node in registry.collect("register_workflow_nodes", validate):
        if node.name in node_types:
            raise PluginError(f"plugin {plugin!r}: node type {node.name!r} is declared twice")
        if node.event is not None and node.event not in events.types:
            raise PluginError(f"plugin {plugin!r}: trigger {node.name!r} names undeclared event {node.event!r}")
        node_types[node.name] = (registry.module_of(plugin), node)
    return node_types


def collect_events(
    registry: PluginRegistry, permissions: Iterable[str] | None = None
) -> tuple[list[EventType], list[EventHandler]]:
    """Declared event types and handlers; each type named after its plugin (``crm.deal.won``) and
    readable with a declared permission (``permissions``: the plugins' own when not given)."""
    types: dict[str, EventType] = {}
    declared = set(permissions) if permissions is not None else {p.name for p in collect_permissions(registry)}

    def validate_type(plugin: str, item: Any) -> None:
        if not isinstance(item, EventType):
            raise ValueError("register() takes an inopsio.events.schemas.EventType")
        namespace = KERNEL if registry.infos[plugin].is_kernel else plugin
        if not item.name.startswith(namespace + "."):
            raise ValueError(f"event type {item.name!r} must start with {namespace + '.'!r}")
        if item.name in types:
            raise ValueError(f"event type {item.name!r} is declared twice")
        if item.permission != ANY_MEMBER and item.permission not in declared:
            raise ValueError(
                f"event type {item.name!r} is read with permission {item.permission!r}, which no loaded "
                "plugin declares (register_permissions)"
            )
        types[item.name] = item

    registry.collect("register_event_types", validate_type)
    handlers: list[EventHandler] = []

    def validate_handler(plugin: str, item: Any) -> None:
        args, kwargs = item if isinstance(item, tuple) else ((item,), {})
        if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
            raise ValueError("register(event_type_or_pattern, async_function, name=..., max_attempts=...)")
        namespace = registry.module_of(plugin)
        name = str(kwargs.get("name") or f"{namespace}.{getattr(args[1], '__name__', 'handler')}")
        if any(h.name == name for h in handlers):
            raise ValueError(f"event handler {name!r} is registered twice")
        handlers.append(
            EventHandler(
                name=name,
                pattern=args[0],
                function=args[1],
                plugin=namespace,
                max_attempts=int(kwargs.get("max_attempts", 8)),
            )
        )

    registry.collect("register_event_handlers", validate_handler)
    return list(types.values()), handlers


def collect_permissions(registry: PluginRegistry) -> list[Permission]:
    """Every plugin's permissions; each must be named after its plugin (``crm.leads.read``)."""
    seen: set[str] = set()

    def validate(plugin: str, item: Any) -> None:
        if not isinstance(item, Permission):
            raise ValueError("register() takes an inopsio.identity.rbac.Permission")
        namespace = KERNEL if registry.infos[plugin].is_kernel else plugin
        if not item.name.startswith(namespace + "."):
            raise ValueError(f"permission {item.name!r} must start with {namespace + '.'!r}")
        if item.name in seen:
            raise ValueError(f"permission {item.name!r} is declared twice")
        seen.add(item.name)

    return [permission for _, permission in registry.collect("register_permissions", validate)]


@contextlib.asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    kernel: Kernel = app.state.kernel
    async with kernel.db.engine.connect() as connection:
        await connection.run_sync(check_app_role)
    kernel.tasks.append(asyncio.create_task(kernel.tenants.directory.listen(kernel.redis)))
    # Usage counts are flushed by the kernel.flush_usage cron job of the workers.
    await kernel.identity.authorizer.load_all()
    kernel.tasks.append(asyncio.create_task(kernel.identity.authorizer.follow_changes()))
    kernel.tasks.append(asyncio.create_task(kernel.identity.api_keys.follow_revocations()))
    # Ended sessions are checked in memory: know them all before the first request.
    revocations = kernel.identity.accounts.revocations
    try:
        await asyncio.wait_for(revocations.reload(), 5)
    except Exception:
        log.warning("could not read ended sessions from Redis; they arrive when it is back", exc_info=True)
    kernel.tasks.append(asyncio.create_task(revocations.follow()))
    await kernel.plugins.call_async("on_startup", kernel=kernel)
    kernel.tasks.append(asyncio.create_task(kernel.observability.sample_forever(kernel)))
    if kernel.settings.dispatch_events:
        kernel.tasks.append(asyncio.create_task(kernel.events.run(kernel)))
    if kernel.settings.run_worker_in_process:
        # Cancelled with the other tasks at shutdown: running jobs get a grace period, then are re-queued.
        kernel.tasks.append(asyncio.create_task(run_worker(kernel)))
    # Everything built so far (plugins, models, routes, templates) lives as long as the process:
    # moved out of the collector's sight, it is not traversed again by every collection.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        # Every step is bounded: a process must always finish shutting down, even when Redis or the
        # database stopped answering mid-way.
        await _bounded(kernel.plugins.call_async("on_shutdown", reverse=True, kernel=kernel), "on_shutdown hooks")
        for task in kernel.tasks:
            task.cancel()
        if kernel.tasks:
            _, stuck = await asyncio.wait(kernel.tasks, timeout=SHUTDOWN_STEP_SECONDS)
            for task in stuck:
                log.warning("background task %r did not stop within %s s", task.get_name(), SHUTDOWN_STEP_SECONDS)
        kernel.tasks.clear()
        await _bounded(kernel.quotas.counter.stop(), "request counters")
        await _bounded(kernel.quotas.flush(), "usage flush")
        await _bounded(kernel.redis.aclose(), "closing Redis")
        await _bounded(kernel.db.dispose(), "closing the database pool")
        kernel.observability.close()


SHUTDOWN_STEP_SECONDS = 10.0


async def _bounded(step: Any, what: str) -> None:
    """Await one shutdown step for at most SHUTDOWN_STEP_SECONDS; log (never raise) what went wrong."""
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_SECONDS)
    except TimeoutError:
        log.warning("shutdown: %s took longer than %s s; going on", what, SHUTDOWN_STEP_SECONDS)
    except Exception:
        log.warning("shutdown: %s failed", what, exc_info=True)


def create_app(
    settings: Settings | None = None,
    *,
    plugins: Sequence[object] = (),
    load_entry_points: bool = True,
) -> Litestar:
    """Build an Inopsio app.

    ``settings`` default to :func:`load_settings`; with no database or Redis URL, embedded ones are
    started. Installed plugins load through the ``inopsio`` entry points (``settings.plugins``
    chooses which); ``plugins`` adds plugin objects or module names besides them.
    """
    settings = ensure_services(settings or load_settings())
    registry = build_plugin_manager(
        settings.plugins, plugins, load_entry_points=load_entry_points, trace=settings.trace_hooks
    )
    collect_models(registry)
    kernel = build_kernel(settings, registry)
    kernel.web = WebRegistry(registry)
    route_handlers: list[Any] = collect_routers(registry, settings)
    app = Litestar(
        route_handlers=route_handlers,
        dependencies={
            "kernel": Provide(provide_kernel),
            "tenant": Provide(provide_tenant),
            "db_session": Provide(provide_db_session),
            "db_reader": Provide(provide_db_reader),
        },
        middleware=[
            DefineMiddleware(TenantResolutionMiddleware, kernel=kernel),
            DefineMiddleware(AuthenticationMiddleware, kernel=kernel),
        ],
        exception_handlers=exception_handlers(registry.hook.render_error),
        openapi_config=OpenAPIConfig(
            title="Inopsio",
            version=__version__,
            path="/schema",
            # The viewer loads from our own static folder (npm-pinned), never from a CDN.
            render_plugins=[
                RapidocRenderPlugin(path=["/", "/rapidoc"], js_url="/static/vendor/rapidoc-min.js", favicon="")
            ],
        ),
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, exclude=["/health"]),
        request_max_body_size=settings.max_body_bytes,
        lifespan=[_lifespan],
        debug=False,
        # Logging is configured once per process (inopsio.observability.configure_logging), not by
        # Litestar: its default queue handler would format lines in another thread, without their context.
        logging_config=None,
    )
    app.state.kernel = kernel
    kernel.observability.instrument(app, SECURITY_HEADERS)
    return app


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory``: settings from the environment, plugins from entry points.

    Runs in each web process, so each one logs in the configured format.
    """
    settings = load_settings(dict(os.environ))
    configure_logging(settings.effective_log_format, settings.log_level)
    return create_app(settings)
