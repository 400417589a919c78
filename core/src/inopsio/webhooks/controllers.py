"""``/api/v1/webhooks``: tenant admins manage subscriptions, rotate secrets, send a test ping, read attempts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.events.visibility import PrincipalReader
from inopsio.identity.authentication import PERMISSION_OPT
from inopsio.identity.controllers import client_of
from inopsio.identity.principal import principal_of
from inopsio.webhooks.models import WebhookAttempt, WebhookSubscription
from inopsio.webhooks.schemas import (
    AttemptOut,
    AttemptPage,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from inopsio.webhooks.services import WebhookService

WRITE = {PERMISSION_OPT: "kernel.webhooks.write"}


def _actor(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The audit log's actor fields: the user, or an API key on behalf of the user who made it."""
    principal = principal_of(request.scope)
    client = client_of(request)
    label = f"api key {principal.label}" if principal is not None and principal.kind == "api_key" else ""
    return {
        "actor_id": principal.user_id if principal is not None else None,
        "actor_label": label,
        "ip": client.ip,
        "user_agent": client.user_agent,
    }


def _reader(request: Request[Any, Any, Any], kernel: Any, tenant_id: UUID) -> PrincipalReader:
    """The acting user or API key as an event reader: it becomes the subscription's owner."""
    principal = principal_of(request.scope)
    if principal is None:  # the access guard admitted the request; this keeps the types honest
        raise Problem(401, "authentication-required", "Sign in, or send an access token or API key.")
    return PrincipalReader(kernel.identity.authorizer, principal, tenant_id)


def _fields(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "event_types": list(row.event_types),
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "owner_id": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _attempt_out(row: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        id=row.id,
        subscription_id=row.subscription_id,
        event_id=row.event_id,
        event_type=row.event_type,
        attempt=row.attempt,
        outcome=row.outcome,
        status_code=row.status_code,
        response_ms=row.response_ms,
        error=row.error,
        response_body=row.response_body,
        at=row.at,
    )


class WebhooksController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]

    @post("/", status_code=201, opt=WRITE)
    async def create_subscription(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[SubscriptionIn]
    ) -> SubscriptionWithSecret:
        """Subscribe a URL to event types the caller may read; the caller owns the subscription, which
        carries only events its owner may read at each delivery. The signing secret is in this response only."""
        row, secret = await WebhookService(kernel, tenant.id).create(
            data, _actor(request), _reader(request, kernel, tenant.id)
        )
        return SubscriptionWithSecret(**_fields(row), secret=secret)

    @get("/", opt=WRITE)
    async def list_subscriptions(self, kernel: KernelDep, tenant: CurrentTenant) -> list[SubscriptionOut]:
        """The tenant's subscriptions, newest first (never their secrets)."""
        return [SubscriptionOut(**_fields(r)) for r in await WebhookService(kernel, tenant.id).list_all()]

    @get("/{subscription_id:uuid}", opt=WRITE)
    async def get_subscription(
        self, kernel: KernelDep, tenant: CurrentTenant, subscription_id: FromPath[UUID]
    ) -> SubscriptionOut:
        return SubscriptionOut(**_fields(await WebhookService(kernel, tenant.id).get(subscription_id)))

    @patch("/{subscription_id:uuid}", opt=WRITE)
    async def update_subscription(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        subscription_id: FromPath[UUID],
        data: JSONBody[SubscriptionPatch],
    ) -> SubscriptionOut:
        """Change the fields given (the caller becomes the owner); re-enabling clears ``disabled_reason``."""
        row = await WebhookService(kernel, tenant.id).update(
            subscription_id, data, _actor(request), _reader(request, kernel, tenant.id)
        )
        return SubscriptionOut(**_fields(row))

    @delete("/{subscription_id:uuid}", status_code=204, opt=WRITE)
    async def delete_subscription(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, subscription_id: FromPath[UUID]
    ) -> None:
        """Remove a subscription and its attempt log; deliveries still queued for it are dropped."""
        await WebhookService(kernel, tenant.id).delete(subscription_id, _actor(request))

    @post("/{subscription_id:uuid}/rotate-secret", status_code=200, opt=WRITE)
    async def rotate_secret(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, subscription_id: FromPath[UUID]
    ) -> SubscriptionWithSecret:
        """Replace the signing secret now; the new one is in this response only."""
        row, secret = await WebhookService(kernel, tenant.id).rotate_secret(subscription_id, _actor(request))
        return SubscriptionWithSecret(**_fields(row), secret=secret)

    @post("/{subscription_id:uuid}/ping", status_code=200, opt=WRITE)
    async def ping(self, kernel: KernelDep, tenant: CurrentTenant, subscription_id: FromPath[UUID]) -> AttemptOut:
        """Send a signed ``webhook.ping`` at once and return its attempt (the "Test" button)."""
        return _attempt_out(await WebhookService(kernel, tenant.id).ping(subscription_id))

    @get("/{subscription_id:uuid}/attempts", opt=WRITE)
    async def list_attempts(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        subscription_id: FromPath[UUID],
        before: Annotated[UUID | None, QueryParameter(description="next_before of the previous page")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AttemptPage:
        """Every delivery attempt to this subscription, newest first."""
        rows = await WebhookService(kernel, tenant.id).attempts(subscription_id, before=before, limit=limit)
        return AttemptPage(
            items=[_attempt_out(r) for r in rows], next_before=rows[-1].id if len(rows) == limit else None
        )
