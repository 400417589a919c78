"""The hooks through which plugins, and the kernel's own features, extend Inopsio.

Every hook that adds things takes a ``register`` callback: call it once per thing you add. The
kernel validates each item as it arrives and names your plugin when one is wrong. Each docstring
says the hook's arguments, what it returns, when it is called and shows an example; the section of
the same name in ``docs/plugin-hooks.md`` (checked against this module by a test) says more.
The kernel calls every hook through pluggy's hook caller, so ``@hookimpl(wrapper=True)`` wrappers
and ``INOPSIO_TRACE_HOOKS`` see each call.

Hooks about one tenant (``on_tenant_created``, ``seed_demo_data``) are only called for the
plugins that tenant has enabled; a plugin never needs to ask "am I enabled here?".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar import Request, Response
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.settings import Settings
    from inopsio.tenancy.schemas import TenantInfo

hookspec = pluggy.HookspecMarker("inopsio")


@hookspec
def register_routes(register: Callable[[Any], None], settings: Settings) -> None:
    """Add HTTP route handlers, controllers or routers.

    Called once while the app is built. ``register(handler)`` takes anything Litestar accepts
    as a route handler; ``settings`` are the app's settings. Returns nothing. Routes of a plugin
    live under ``/api/v1/<plugin>/`` (API) or ``/<plugin>/`` (pages); the kernel refuses others.
    A plugin's routes answer 404 for a tenant that has switched the plugin off.
    Example: ``register(NoteController)`` (a ``Controller`` with ``path = "/api/v1/sample/notes"``).
    """


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Declare the SQLAlchemy models (subclasses of ``inopsio.db.Base``) the plugin owns.

    Called once while the app is built and by ``inopsio migrate``; ``register(model)`` once per
    model class. Returns nothing. Tenant-owned models use ``TenantOwned``/``TenantScoped``; the
    isolation conformance test checks each of them. Example: ``register(Note)``.
    """


@hookspec
def register_migrations(register: Callable[..., None]) -> None:
    """Declare the plugin's alembic branch: ``register(location, branch_label)``.

    ``location`` is the folder of the plugin's revision files; its first revision carries
    ``branch_labels = ("<branch_label>",)`` and ``depends_on`` the kernel revision it builds on
    (``"kernel_0001"`` or later). Returns nothing; called whenever the migration set-up is built
    (``inopsio migrate``, ``serve``, ``migrations new``). Example:
    ``register(Path(__file__).parent / "migrations", "sample")``.
    ``inopsio migrate`` upgrades every head. ``inopsio migrations new <branch_label> "message"``
    starts a revision after the branch's head; ``inopsio.db.migration_helpers.tenant_table``
    creates a tenant-owned table in it as the model declares it.
    """


@hookspec
def register_permissions(register: Callable[[Any], None]) -> None:
    """Declare permissions: ``register(Permission(name=..., description=..., roles=(...)))``.

    Names are ``<plugin>.<resource>.<action>`` (``crm.leads.read``); ``roles`` are the built-in
    roles (admin, manager, member, viewer) that get it by default; owners get everything. Tenant
    admins can grant any declared permission to custom roles. Guard a route with
    ``opt={"permission": "crm.leads.read"}``. Returns nothing; called when the kernel is built
    (app, worker and CLI).
    """


@hookspec
def register_event_types(register: Callable[[Any], None]) -> None:
    """Declare event types: ``register(EventType(name=..., description=..., permission=..., payload=SomeStruct))``.

    Names are ``<plugin>.<thing>.<happened>`` (``crm.deal.stage_changed``); ``payload`` is the
    msgspec Struct the event's ``data`` follows (its JSON Schema is in ``GET /api/v1/events/catalog``
    and ``docs/events.md``). Publish with ``await kernel.events.publish(session, name, data)``.

    ``permission`` (required) says who may read the type: a declared permission, usually the one that
    reads the record in the API (``crm.deals.read``), or ``inopsio.events.schemas.ANY_MEMBER``.
    ``visible=rule`` adds a row-level rule, ``rule(data, reader) -> bool`` (``reader.user_id``,
    ``reader.allowed(permission)``; pure, no database), for records some holders of the permission
    may not see (a member's private leads); it must answer ``False`` for data it does not recognise.
    The activity feed, the WebSocket, webhooks and workflow triggers show an event only to readers
    who pass both. A type without a permission, or naming one no loaded plugin declares, stops the
    app at start-up with an error naming the plugin. Returns nothing; called when the kernel is
    built (app, worker and CLI).
    """


@hookspec
def register_event_handlers(register: Callable[..., None]) -> None:
    """Handle events: ``register("crm.deal.won", handler, name="erp.invoice_from_deal", max_attempts=8)``.

    ``handler(event, ctx)`` is async; ``ctx`` has ``kernel``, ``tenant_id`` and ``session`` (a
    transaction in the event's tenant that also records the delivery, so the handler's database
    effects happen once). The first argument is an exact type, a prefix like ``"crm.deal.*"`` or
    ``"*"``; a plugin may handle other plugins' events by name without importing them. Delivery is
    at least once; failures retry with backoff and park after ``max_attempts``. Only plugins the
    event's tenant has enabled are called. Returns nothing; called when the kernel is built (app
    and worker).
    """


@hookspec
def register_health_checks(register: Callable[[str, Callable[[Kernel], Any]], None]) -> None:
    """Add readiness checks: ``register(name, check)``, ``check`` an async callable taking the kernel.

    Returns nothing; called when the kernel is built. ``/health/ready`` answers 503 naming every
    check that raised or took longer than two seconds. Example:
    ``register("sample.storage", check_storage)`` with ``async def check_storage(kernel): ...``.
    """


@hookspec
def register_jobs(register: Callable[..., None], settings: Settings) -> None:
    """Add background jobs (arq): ``register(function, name=..., max_tries=5, timeout=300, retry_delay=10)``.

    Called once when the kernel is built (with the app's ``settings``), by the web app and by
    ``inopsio worker``; returns nothing. ``function`` is
    ``async def job(ctx, **kwargs)``; ``name`` is ``<plugin>.<job>``. Queue one with
    ``await kernel.jobs.enqueue(name, tenant_id=..., **kwargs)`` (plain-data arguments; ``_job_id``
    for idempotency, ``_defer_by`` to delay). The job runs with ``ctx["kernel"]``, ``ctx["tenant_id"]``,
    ``ctx["tenant"]`` and ``ctx["db_session"]()`` (a transaction scoped to that tenant). Any exception
    retries it after ``retry_delay`` seconds, doubling each time, until ``max_tries``; a try longer than
    ``timeout`` seconds is cancelled and counts as a failure; ``inopsio.jobs.PermanentJobError`` fails it
    at once. Jobs run at least once: make them idempotent.

    ``cron={"minute": {0, 30}}`` (arq's fields: month, day, weekday, hour, minute, second,
    run_at_startup) makes it a scheduled platform job (no tenant), run once per time by any worker.
    ``cron={...}, per_tenant=True`` makes it a scheduled tenant job: at each time the kernel queues one
    run per active tenant that has the plugin on (job id ``<name>:<tenant id>:<time>``, so a second
    worker or a retry queues nothing twice), each with the tenant's ``ctx`` as above and retried on
    its own; a run whose tenant was suspended or switched the plugin off meanwhile is skipped. The
    job never checks whether it is enabled; ``kernel.jobs.enqueue(name, tenant_id=...)`` runs it now
    for one tenant. A job that must walk tenants itself uses ``inopsio.jobs.for_each_tenant(kernel,
    function, module=...)`` (one transaction per tenant) or ``inopsio.jobs.tenant_session(kernel, id)``.
    """


@hookspec
def register_cli_commands(register: Callable[[Any], None]) -> None:
    """Add ``click`` commands or groups to the ``inopsio`` command line: ``register(command)``.

    Called once per run of ``inopsio``, when it first lists or looks up a command; returns nothing.
    The kernel's own commands (``serve``, ``worker``, ``migrate``, ...) come through this hook too.
    A name already taken, or an object that is not a click command, is an error naming the plugin.
    Example: ``register(hello_count)``, ``hello_count`` a ``@click.command("hello-count")``.
    """


@hookspec
async def on_startup(kernel: Kernel) -> None:
    """Called (and awaited) once per web process after the database and Redis are reachable.

    ``kernel`` is the process's kernel; returns nothing; if it raises, the process does not start.
    Example: ``kernel.tasks.append(asyncio.create_task(refresh_rates(kernel)))`` (tasks in
    ``kernel.tasks`` are cancelled at shutdown).
    """


@hookspec
async def on_shutdown(kernel: Kernel) -> None:
    """Called (and awaited) once per web process while it shuts down, in reverse plugin order.

    ``kernel`` as for ``on_startup``; returns nothing. Example:
    ``await kernel.redis.delete(f"{kernel.settings.redis_namespace}:hello:lock")``.
    """


@hookspec
async def on_tenant_created(tenant: TenantInfo, session: AsyncSession) -> None:
    """Seed per-tenant defaults (e.g. a default pipeline) for a new tenant.

    ``tenant`` is the new tenant's ``TenantInfo``; ``session`` the tenant-scoped transaction that
    creates it: if a plugin raises, the tenant is not created. Returns nothing. Called (and
    awaited) once per new tenant, only for the plugins enabled for it. Example:
    ``session.add(Pipeline(name="Sales", is_default=True))``.
    """


@hookspec
async def seed_demo_data(tenant: TenantInfo, session: AsyncSession) -> None:
    """Fill the demo tenant with realistic sample data (``inopsio serve --demo``).

    ``tenant`` and ``session`` as for ``on_tenant_created``; returns nothing. Called (and awaited)
    once, in the demo tenant's transaction, after ``on_tenant_created``, for tenants created with
    demo data, only for the plugins enabled there. Example:
    ``session.add_all([Note(text="Hello from the demo")])``.
    """


@hookspec
def register_web_assets(register: Callable[[Any], None]) -> None:
    """Add the plugin's page templates and static files: ``register(WebAssets(templates=..., static=...))``.

    Templates are then found as ``"<plugin>/<path>"`` and static files are served at
    ``/static/<plugin>/<path>`` under a content-hashed name (``asset_url("<plugin>/<path>")`` in a
    template). Pages are ordinary routes under ``/<plugin>/`` (``register_routes``) that return
    ``inopsio.web.page(request, "<plugin>/<template>", context)``. Returns nothing; called once
    while the app is built.
    """


@hookspec
def register_mail_templates(register: Callable[[Any], None]) -> None:
    """Add the plugin's mail templates: ``register(Path(__file__).parent / "templates" / "erp" / "mail")``.

    The folder holds ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` per message; they are
    then rendered (sandboxed, HTML autoescaped) as ``"<plugin>/<name>"`` by
    ``kernel.mail.queue(session, tenant, to=..., template="<plugin>/<name>", context=..., attachments=...)``,
    which writes the message in the caller's transaction and sends it after commit. One folder per plugin.
    Returns nothing; called once while the app is built.
    """


@hookspec
def register_menu(register: Callable[[Any], None]) -> None:
    """Add navigation entries: ``register(MenuEntry(label="Leads", href="/crm/leads", section="CRM",
    permission="crm.leads.read", icon="users", order=10))``.

    Each user sees the entries their permissions allow, of the plugins their tenant has enabled.
    Returns nothing; called once while the app is built.
    """


@hookspec
def register_dashboard_cards(register: Callable[[Any], None]) -> None:
    """Add cards to the dashboard: ``register(DashboardCard(name="crm.pipeline", title="Pipeline",
    href="/crm/cards/pipeline", permission="crm.deals.read"))``.

    The card's body is the HTML fragment ``href`` answers, loaded after the page by htmx.
    Returns nothing; called once while the app is built; shown for tenants with the plugin on.
    """


@hookspec
def register_workflow_nodes(register: Callable[[Any], None]) -> None:
    """Add workflow node types: ``register(NodeType(name="crm.lead.assign", kind="action", ...))``.

    Triggers name the event type that starts them; a trigger fires only for events its workflow's
    owner may read at that moment (``inopsio.automation.trigger_may_fire``, the rule of the activity
    feed). Actions and conditions carry an async ``execute(ctx, config, data)`` (see
    ``inopsio.automation``). Listed with their config schemas by ``GET /api/v1/automation/node-types``
    for the tenant's enabled plugins. Returns nothing; called when the kernel is built.
    """


@hookspec(firstresult=True)
def render_error(
    request: Request[Any, Any, Any], status: int, code: str, detail: str, members: dict[str, Any]
) -> Response[Any] | None:
    """Answer an error in another form than its RFC 9457 problem document, or return ``None``.

    Called for every error response (after the exception is logged), with the problem's ``status``,
    ``code`` (``"not-found"``, ``""`` for a bare HTTP error), a ``detail`` fit to show a person, and
    its extra ``members`` (``request_id`` of a 500). The first implementation returning a response
    wins; with none, the client gets the problem document. The kernel's web feature answers
    browsers (``Accept: text/html`` outside ``/api/``) with an error page or the sign-in redirect,
    so the error layer never imports the web layer. A response that fails to render is logged and
    the problem document is sent instead. Validation errors (422) are always problem documents.
    Example: ``return Response(content=f"{status}: {detail}", status_code=status,
    media_type="text/plain")`` for the plugin's own kiosk pages, ``None`` elsewhere.
    """
