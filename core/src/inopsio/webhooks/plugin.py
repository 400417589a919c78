"""The kernel's outgoing webhooks, registered through the plugin hooks like any plugin's feature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inopsio import hookimpl
from inopsio.identity.rbac import Permission
from inopsio.webhooks.controllers import WebhooksController
from inopsio.webhooks.delivery import DELIVER_JOB, deliver, enqueue_deliveries, max_tries
from inopsio.webhooks.models import WebhookAttempt, WebhookSubscription

if TYPE_CHECKING:
    from inopsio.settings import Settings


@hookimpl
def register_models(register: Any) -> None:
    register(WebhookSubscription)
    register(WebhookAttempt)


@hookimpl
def register_routes(register: Any) -> None:
    register(WebhooksController)


@hookimpl
def register_permissions(register: Any) -> None:
    register(
        Permission(
            name="kernel.webhooks.write",
            description="Manage outgoing webhooks: subscriptions, secrets, test pings, delivery log",
            roles=("admin",),
        )
    )


@hookimpl
def register_event_handlers(register: Any) -> None:
    register("*", enqueue_deliveries, name="kernel.webhooks")


@hookimpl
def register_jobs(register: Any, settings: Settings) -> None:
    # Retries: base, 2x base, ... at most an hour apart, for the retry window (a day by default).
    register(
        deliver,
        name=DELIVER_JOB,
        max_tries=max_tries(settings),
        timeout=60.0,
        retry_delay=settings.webhook_retry_base_seconds,
    )
