"""The ``inopsio`` command: serve, worker, migrate, tenant, plugins, operator (and plugins' commands)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from inopsio import __version__, hookimpl
from inopsio.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
DEMO_SLUG = "demo"


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"bad setting: {exc}") from None


def _registry(settings: Settings) -> Any:
    from inopsio.plugins import PluginError, build_plugin_manager

    try:
        return build_plugin_manager(settings.plugins, trace=settings.trace_hooks)
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None


def _with_kernel(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(kernel)`` against the configured (or embedded) services."""
    from inopsio.app import build_kernel
    from inopsio.embedded import ensure_services

    settings = ensure_services(_settings())
    registry = _registry(settings)

    async def run() -> T:
        kernel = build_kernel(settings, registry)
        try:
            return await action(kernel)
        finally:
            await kernel.redis.aclose()
            await kernel.db.dispose()

    return asyncio.run(run())


class InopsioGroup(click.Group):
    """The ``inopsio`` command, whose subcommands (the kernel's too) come from ``register_cli_commands``.

    They are collected once per invocation, when click first asks for them, from the plugins the
    settings enable. With a bad setting or a plugin that does not load, the kernel's commands are
    still offered: running one reports the problem.
    """

    def _registered(self, ctx: click.Context) -> dict[str, click.Command]:
        meta = ctx.find_root().meta
        if "inopsio.commands" not in meta:
            meta["inopsio.commands"] = _registered_commands()
        commands: dict[str, click.Command] = meta["inopsio.commands"]
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._registered(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._registered(ctx).get(name)


def _registered_commands() -> dict[str, click.Command]:
    from inopsio.plugins import PluginError, build_plugin_manager

    commands: dict[str, tuple[str, click.Command]] = {}

    def validate(plugin: str, item: Any) -> None:
        if not isinstance(item, click.Command) or not item.name:
            raise ValueError(f"{item!r} is not a named click command or group")
        if item.name in commands:
            raise ValueError(f"the command {item.name!r} is already added by {commands[item.name][0]!r}")
        commands[item.name] = (plugin, item)

    try:
        settings = load_settings()
        build_plugin_manager(settings.plugins, trace=settings.trace_hooks).collect("register_cli_commands", validate)
    except (SettingsError, PluginError) as exc:
        if isinstance(exc, PluginError):
            click.echo(f"Error: {exc}", err=True)
        commands.clear()
        build_plugin_manager(load_entry_points=False).collect("register_cli_commands", validate)
    return {name: command for name, (_, command) in commands.items()}


@click.group(cls=InopsioGroup)
@click.version_option(__version__, prog_name="inopsio")
def main() -> None:
    """Inopsio: CRM, ERP, email, workflows and security on one multi-tenant kernel.

    Settings come from INOPSIO_* environment variables (see the README); with no
    INOPSIO_DATABASE_URL / INOPSIO_REDIS_URL an embedded PostgreSQL and Redis run in INOPSIO_DATA_DIR.
    """
    from inopsio.observability import configure_logging

    try:
        settings = load_settings()
        configure_logging(settings.effective_log_format, settings.log_level)
    except SettingsError:  # the command reports the bad setting; log plainly until then
        configure_logging("console", os.environ.get("INOPSIO_LOG_LEVEL", "INFO"))


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: INOPSIO_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: INOPSIO_PORT or 8000).")
@click.option("--workers", type=int, default=None, help="Web processes (default: INOPSIO_WEB_WORKERS or 1).")
@click.option("--demo", is_flag=True, help="Create a demo tenant with sample data and print where to sign in.")
def serve(host: str | None, port: int | None, workers: int | None, demo: bool) -> None:
    """Migrate the database, then serve the web app and API."""
    import uvicorn

    from inopsio import migrate
    from inopsio.embedded import ensure_services, stop_services
    from inopsio.observability.metrics import multiprocess_dir, prepare_multiprocess_dir

    # A service manager stops a server with SIGTERM. uvicorn shuts down gracefully on it and then sends
    # the signal to the process again, which by default ends the process at once: the clean-up below
    # (and the embedded PostgreSQL and Redis it stops) would be skipped. Exit normally instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = ensure_services(_settings())
    registry = _registry(settings)
    migrate.upgrade(settings, registry)
    host = host or settings.host
    port = port or settings.port
    if demo:
        _create_demo(settings, host, port)
    from inopsio.app import STATIC_DIR

    if not (STATIC_DIR / "vendor" / "htmx.min.js").exists():
        click.echo(
            "note: browser assets are not built; run `npm ci` at the repository root (the pages need them).",
            err=True,
        )
    click.echo(f"Inopsio {__version__} on http://{host}:{port}  (API schema: http://{host}:{port}/schema)")
    workers = workers or settings.web_workers
    if workers > 1 and not multiprocess_dir():
        # One socket, several processes: /metrics on any of them must add up all of them.
        prepare_multiprocess_dir(settings.data_dir / "metrics")
    try:
        uvicorn.run(
            "inopsio.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's loggers go through ours (JSON with the request id), in every process
            proxy_headers=True,
            server_header=False,
        )
    finally:
        stop_services()  # the embedded PostgreSQL and Redis this command started end with it


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: leave through ``SystemExit``, so ``finally`` blocks and exit handlers run."""
    raise SystemExit(0)


DEMO_OWNER = "owner@demo.example.com"


def _create_demo(settings: Settings, host: str, port: int) -> None:
    """Create the demo tenant (once) with its owner; give the owner a fresh password each start."""
    import secrets

    from sqlalchemy import update

    from inopsio.identity.models import User
    from inopsio.platform.auth import create_operator_token
    from inopsio.tenancy.schemas import TenantCreate

    password = "demo-" + secrets.token_urlsafe(12)

    async def action(kernel: Any) -> tuple[Any, str]:
        accounts = kernel.identity.accounts
        tenant = await kernel.tenants.by_slug(DEMO_SLUG)
        if tenant is None:

            async def add_owner(session: Any, info: Any) -> None:
                from inopsio.identity.models import User as UserModel

                user = UserModel(
                    email=DEMO_OWNER, name="Demo Owner", password_hash=await accounts.passwords.hash(password)
                )
                session.add(user)
                await session.flush()
                await accounts.add_member(session, info, user.id, "owner")

            tenant = await kernel.tenants.create(
                TenantCreate(slug=DEMO_SLUG, name="Demo Company"), demo_data=True, then=add_owner
            )
            await kernel.identity.authorizer.changed(tenant.id)
        else:
            async with kernel.db.session(tenant.id) as session:
                await session.execute(
                    update(User)
                    .where(User.email == DEMO_OWNER)
                    .values(password_hash=await accounts.passwords.hash(password))
                )
        token = await create_operator_token(kernel.db, f"demo-{os.getpid()}")
        return tenant, token

    tenant, token = _with_kernel(action)
    base = settings.base_domain
    click.echo(
        f"Demo tenant {tenant.slug!r} at http://{tenant.slug}.{base}:{port}/ (API clients: X-Tenant: {tenant.slug})"
    )
    click.echo(f"  sign in as {DEMO_OWNER} with password {password}")
    click.echo(
        f"  e.g. curl -X POST -H 'X-Tenant: {tenant.slug}' -H 'Content-Type: application/json' "
        f'-d \'{{"email": "{DEMO_OWNER}", "password": "{password}"}}\' http://{host}:{port}/api/v1/auth/login'
    )
    click.echo(f"Platform operator token (shown once): {token}")


@click.command()
@click.option("--downgrade", "downgrade_to", metavar="TARGET", help="Downgrade to TARGET (e.g. sample@base).")
@click.option("--heads", "show_heads", is_flag=True, help="List each branch's head revision and exit.")
def migrate(downgrade_to: str | None, show_heads: bool) -> None:
    """Upgrade the kernel's and every plugin's schema branch (as the table owner)."""
    from inopsio import migrate as migrations
    from inopsio.embedded import ensure_services

    settings = ensure_services(_settings())
    registry = _registry(settings)
    if show_heads:
        for label, revs in migrations.heads(settings, registry).items():
            click.echo(f"{label}: {', '.join(revs)}")
        return
    try:
        if downgrade_to:
            migrations.downgrade(settings, registry, downgrade_to)
        else:
            migrations.upgrade(settings, registry)
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("database is up to date" if not downgrade_to else f"downgraded to {downgrade_to}")


@click.group()
def migrations() -> None:
    """Start schema revisions (`inopsio migrate` applies them)."""


@migrations.command("new")
@click.argument("branch")
@click.argument("message")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Use DIR (e.g. a copy of the branch's version folder) instead of the folder the plugin registered.",
)
def migrations_new(branch: str, message: str, directory: Path | None) -> None:
    """Start a revision on BRANCH (kernel, or a plugin's branch label or name) after its head.

    The file is numbered after the head (crm_0006 -> crm_0007), named after MESSAGE, and imports
    the tenant table helpers (inopsio.db.migration_helpers). Its path is printed.
    """
    from inopsio import migrate as schema

    registry = _registry(_settings())
    try:
        path = schema.new_revision(registry, branch, message, directory)
    except schema.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(path))


@click.command()
@click.option("--burst", is_flag=True, help="Run the queued jobs, then exit (no cron jobs).")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's Prometheus metrics (job durations and failures) on this port.",
)
def worker(burst: bool, metrics_port: int | None) -> None:
    """Run background jobs (every plugin's, and the kernel's cron jobs such as usage flushing).

    Run as many as needed, on any machines that reach the same PostgreSQL and Redis. SIGTERM lets
    running jobs finish for a few seconds, then re-queues them.
    """
    from inopsio.jobs import drain, run_worker
    from inopsio.kernel import Kernel

    async def action(kernel: Kernel) -> None:
        if metrics_port is not None:
            from prometheus_client import start_http_server

            registry = kernel.observability.metrics.exposition_registry()
            start_http_server(metrics_port, addr=kernel.settings.host, registry=registry)
        names = ", ".join(sorted(kernel.jobs.definitions))
        # Webhook deliveries (queued by this process's dispatcher, sent by its jobs) carry only what
        # their owners may read now: the worker keeps RBAC loaded and in step like a web process.
        await kernel.identity.authorizer.load_all()
        rbac = asyncio.create_task(kernel.identity.authorizer.follow_changes())
        try:
            if burst:
                outcome = await drain(kernel, max_seconds=24 * 3600)
                click.echo(f"{outcome.complete} job(s) done, {outcome.failed} failed, {outcome.retried} retried")
                return
            click.echo(f"worker running jobs {names}; Ctrl+C to stop")
            # Workers dispatch events too, so they are delivered with no web process running.
            dispatcher = asyncio.create_task(kernel.events.run(kernel)) if kernel.settings.dispatch_events else None
            try:
                await run_worker(kernel, handle_signals=True)
            finally:
                if dispatcher is not None:
                    dispatcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await dispatcher
        finally:
            rbac.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rbac
            kernel.observability.close()  # export the last spans; drop this process's live gauges

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        _with_kernel(action)


@click.group()
def tenant() -> None:
    """Create, list, suspend and resume tenants."""


def _print_tenant(t: Any) -> None:
    click.echo(f"{t.slug:<24} {t.status:<10} {t.id}  {t.name}")


@tenant.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The tenant's name.")
@click.option("--demo-data", is_flag=True, help="Also let plugins fill it with sample data.")
def tenant_create(slug: str, name: str, demo_data: bool) -> None:
    """Create a tenant served at SLUG.<base domain>."""
    from inopsio.errors import Problem
    from inopsio.tenancy.schemas import TenantCreate

    try:
        data = msgspec.convert({"slug": slug, "name": name}, TenantCreate)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"invalid tenant: {exc}") from None
    try:
        _print_tenant(_with_kernel(lambda k: k.tenants.create(data, demo_data=demo_data)))
    except Problem as exc:
        raise click.ClickException(exc.detail) from None


@tenant.command("list")
@click.option("--search", help="Part of the slug or name.")
@click.option("--status", type=click.Choice(["active", "suspended"]))
def tenant_list(search: str | None, status: str | None) -> None:
    """List tenants."""

    async def action(kernel: Any) -> list[Any]:
        items: list[Any] = []
        after = None
        while True:
            page, _ = await kernel.tenants.list(search=search, status=status, after=after, limit=500)
            items += page
            if len(page) < 500:
                return items
            after = page[-1].slug

    for t in _with_kernel(action):
        _print_tenant(t)


def _by_slug_then(slug: str, change: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    async def action(kernel: Any) -> Any:
        t = await kernel.tenants.by_slug(slug)
        if t is None:
            raise click.ClickException(f"no tenant {slug!r}")
        return await change(kernel, t)

    return _with_kernel(action)


@tenant.command("suspend")
@click.argument("slug")
@click.option("--reason", help="Shown to nobody but operators; kept with the tenant.")
def tenant_suspend(slug: str, reason: str | None) -> None:
    """Suspend a tenant: every request gets 403; its data stays."""
    _print_tenant(_by_slug_then(slug, lambda k, t: k.tenants.suspend(t.id, reason)))


@tenant.command("resume")
@click.argument("slug")
def tenant_resume(slug: str) -> None:
    """Resume a suspended tenant."""
    _print_tenant(_by_slug_then(slug, lambda k, t: k.tenants.resume(t.id)))


@click.command()
def plugins() -> None:
    """List loaded plugins with their version and the hooks they implement."""
    registry = _registry(_settings())
    for info in registry.infos.values():
        source = "kernel" if info.is_kernel else (info.distribution or info.module)
        click.echo(f"{info.name:<22} {info.version:<10} {source}")
        click.echo(f"    hooks: {', '.join(info.hooks) or '(none)'}")


@click.command("events-catalog")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), help="Update this Markdown file's catalog.")
def events_catalog(write_path: str | None) -> None:
    """Print (or write into docs/events.md) the event types the loaded plugins declare."""
    from pathlib import Path

    from inopsio.app import collect_events
    from inopsio.events.catalog import render_markdown, write_into

    types, _ = collect_events(_registry(_settings()))
    if write_path:
        changed = write_into(Path(write_path), types)
        click.echo(f"{write_path}: {'updated' if changed else 'already up to date'}")
    else:
        click.echo(render_markdown(types))


@click.group()
def operator() -> None:
    """Platform operator credentials for /api/v1/platform."""


@operator.command("create-token")
@click.argument("name")
def operator_create_token(name: str) -> None:
    """Create an operator token called NAME and print it (it is shown only once)."""
    from inopsio.platform.auth import create_operator_token

    click.echo(_with_kernel(lambda k: create_operator_token(k.db, name)))


@operator.command("revoke-token")
@click.argument("name")
def operator_revoke_token(name: str) -> None:
    """Revoke every token called NAME."""
    from inopsio.platform.auth import revoke_operator_token

    count = _with_kernel(lambda k: revoke_operator_token(k.db, name))
    click.echo(f"revoked {count} token(s)")


@hookimpl
def register_cli_commands(register: Callable[[click.Command], None]) -> None:
    """The kernel's own commands, added like any plugin's."""
    for command in (serve, migrate, migrations, worker, tenant, plugins, events_catalog, operator):
        register(command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
