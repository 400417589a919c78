"""The kernel object: what one process of Inopsio holds, handed to hooks and request handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from inopsio.db.engine import Database
    from inopsio.events.bus import EventBus
    from inopsio.identity.services import Identity
    from inopsio.jobs.queue import JobQueue
    from inopsio.mail.service import MailService
    from inopsio.observability import Observability
    from inopsio.plugins import PluginRegistry
    from inopsio.quotas.services import QuotaService
    from inopsio.realtime.hub import RealtimeHub
    from inopsio.settings import Settings
    from inopsio.tenancy.services import TenantService


class Kernel:
    """Settings, plugins, database, Redis and the kernel services of one process.

    A plain class on purpose: it is injected as a dependency, never validated or serialised.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        plugins: PluginRegistry,
        db: Database,
        redis: Redis,
        tenants: TenantService,
        quotas: QuotaService,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.db = db
        self.redis = redis
        self.tenants = tenants
        self.quotas = quotas
        #: Accounts, tokens and RBAC; set by the app factory once the plugins' permissions are known.
        self.identity: Identity = None  # type: ignore[assignment]
        #: Publishing and dispatching domain events; set by the app factory.
        self.events: EventBus = None  # type: ignore[assignment]
        #: Background jobs (arq): ``await kernel.jobs.enqueue(name, tenant_id=..., **kwargs)``.
        self.jobs: JobQueue = None  # type: ignore[assignment]
        #: Outgoing mail, sent after the caller's transaction commits:
        #: ``await kernel.mail.queue(session, tenant, to=..., template=..., context={...}, attachments=[...])``.
        self.mail: MailService = None  # type: ignore[assignment]
        #: WebSocket fan-out of this process (``realtime.connections``: open sockets); set at start-up.
        self.realtime: RealtimeHub = None  # type: ignore[assignment]
        #: Metrics and tracing of this process (see ``inopsio.observability``); set by the app factory.
        self.observability: Observability = None  # type: ignore[assignment]
        #: (plugin, name, async check(kernel)) for /health/ready.
        self.health_checks: list[tuple[str, str, Callable[[Kernel], Any]]] = []
        #: Workflow node types of every plugin by name: (module, NodeType); see ``inopsio.automation``.
        self.node_types: dict[str, tuple[str, Any]] = {}
        #: What plugins add to the web shell (menu, dashboard cards, templates, static files).
        self.web: Any = None
        #: Background tasks of this process (cache invalidation, usage flushing), cancelled on shutdown.
        self.tasks: list[Any] = []
