"""Sending one signed webhook request, and the job and event handler that deliver events with retries.

Every event is offered to the tenant's enabled subscriptions whose event types match and whose
owner may read it now (the kernel's rule, :mod:`inopsio.events.visibility`: an owner demoted or
removed since the subscription was set up stops receiving what they lost); each match becomes one
job (id ``<event id>:<subscription id>``, so a redelivered event queues nothing new).
The job POSTs the event, logs the attempt, and on a failure raises so the job queue retries it
``webhook_retry_base_seconds`` later, doubling up to an hour, until ``webhook_retry_window_seconds``
after the first attempt; then it gives up. A 410 Gone switches the subscription off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import msgspec
from sqlalchemy import func, select, update

from inopsio import __version__
from inopsio.db.base import utcnow
from inopsio.events.models import EventRecord
from inopsio.events.visibility import owner_reader
from inopsio.identity import audit
from inopsio.jobs import PermanentJobError
from inopsio.net import UnsafeUrlError, check_public_url, outbound_client
from inopsio.webhooks.models import WebhookAttempt, WebhookSubscription
from inopsio.webhooks.schemas import WebhookPayload

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.events.schemas import DomainEvent, EventReader
    from inopsio.jobs import JobContext
    from inopsio.kernel import Kernel
    from inopsio.settings import Settings

DELIVER_JOB = "kernel.webhooks.deliver"
PING_TYPE = "webhook.ping"
#: Seconds one request may take in all (connecting, sending, the answer's headers and first kilobyte).
TIMEOUT_SECONDS = 10.0
RESPONSE_BODY_BYTES = 1024
MAX_RETRY_DELAY_SECONDS = 3600.0
SIGNATURE_HEADER = "Inopsio-Signature"
#: Where :func:`enqueue_deliveries` keeps a transaction's enabled subscriptions and their owners'
#: readers (``session.info``).
SUBSCRIPTIONS_INFO = "kernel.webhooks.subscriptions"
READERS_INFO = "kernel.webhooks.readers"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Inopsio-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def matches(patterns: list[str], event_type: str) -> bool:
    """Whether a subscription's patterns (exact, ``prefix.*`` or ``*``) take ``event_type``."""
    return any(p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns)


async def check_webhook_url(url: str, settings: Settings) -> None:
    """Raise :class:`UnsafeUrlError` for a URL webhooks must not be sent to.

    In production: https only, and the host must resolve to public addresses only (checked when a
    subscription is saved and again before every request, since DNS answers change).
    """
    await check_public_url(url, settings)
    if settings.is_production and urlsplit(url).scheme != "https":
        raise UnsafeUrlError("webhook URLs must use https")


def max_tries(settings: Settings) -> int:
    """Tries that fit in the retry window with delays of base, 2x base, ... capped at an hour (plus one)."""
    tries, elapsed, delay = 1, 0.0, settings.webhook_retry_base_seconds
    while elapsed + delay <= settings.webhook_retry_window_seconds and tries < 1000:
        elapsed += delay
        tries += 1
        delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
    return tries + 1


@dataclass(frozen=True)
class Response:
    """What one request got back: a status, or the error that stopped it."""

    status_code: int | None
    response_ms: int | None
    error: str | None
    body: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def summary(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code is not None else str(self.error)


async def post_signed(settings: Settings, url: str, secret: str, payload: WebhookPayload, *, attempt: int) -> Response:
    """POST ``payload`` to ``url``, signed with ``secret``; never raises for what the network does."""
    body = msgspec.json.encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Inopsio-Webhooks/{__version__}",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "Inopsio-Event-Id": str(payload.id),
        "Inopsio-Event-Type": payload.type,
        "Inopsio-Attempt": str(attempt),
    }
    started = time.perf_counter()
    elapsed: int | None = None
    try:
        # Before every request too: a host that was public when saved may resolve elsewhere now.
        await check_webhook_url(url, settings)
        async with asyncio.timeout(TIMEOUT_SECONDS):
            # Redirects are not followed: a receiver must answer at the URL it was registered with.
            async with (
                outbound_client(settings, timeout=TIMEOUT_SECONDS) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                elapsed = round((time.perf_counter() - started) * 1000)
                received = b""
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) >= RESPONSE_BODY_BYTES:
                        break
        text = received[:RESPONSE_BODY_BYTES].decode("utf-8", errors="replace")
        return Response(response.status_code, elapsed, None, text)
    except UnsafeUrlError as exc:
        return Response(None, None, f"refused: {exc}", None)
    except (TimeoutError, httpx.TimeoutException):
        error = f"no answer within {TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if elapsed is None:
        elapsed = round((time.perf_counter() - started) * 1000)
    return Response(None, elapsed, error, None)


async def record_attempt(
    session: AsyncSession,
    subscription: WebhookSubscription,
    payload: WebhookPayload,
    attempt: int,
    outcome: str,
    response: Response,
) -> WebhookAttempt:
    """Log one attempt; on ``disabled`` also switch the subscription off (and say so in the audit log)."""
    row = WebhookAttempt(
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.id,
        event_id=payload.id,
        event_type=payload.type,
        attempt=attempt,
        outcome=outcome,
        status_code=response.status_code,
        response_ms=response.response_ms,
        error=response.error[:2000] if response.error else None,
        response_body=response.body,
        at=utcnow(),
    )
    session.add(row)
    if outcome == "disabled":
        await session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription.id)
            .values(enabled=False, disabled_reason="The receiver answered 410 Gone.", updated_at=utcnow())
        )
        await audit.record(
            session,
            subscription.tenant_id,
            "webhook.disabled",
            actor_label="webhook delivery",
            subscription_id=str(subscription.id),
            url=subscription.url,
            reason="410 Gone",
        )
    await session.flush()
    return row


async def enqueue_deliveries(event: DomainEvent, ctx: dict[str, Any]) -> None:
    """Event handler (every type): queue one delivery job per matching enabled subscription whose owner
    may read the event now."""
    kernel: Kernel = ctx["kernel"]
    session: AsyncSession = ctx["session"]
    # The dispatcher delivers a tenant's batch of events in one transaction: read the (usually
    # empty) subscription list once per transaction, not once per event.
    subscriptions: list[tuple[UUID, list[str], UUID | None]] | None = session.info.get(SUBSCRIPTIONS_INFO)
    if subscriptions is None:
        rows = await session.execute(
            select(WebhookSubscription.id, WebhookSubscription.event_types, WebhookSubscription.created_by).where(
                WebhookSubscription.enabled.is_(True)
            )
        )
        subscriptions = session.info[SUBSCRIPTIONS_INFO] = [(r[0], list(r[1]), r[2]) for r in rows]
    readers: dict[UUID | None, EventReader] = session.info.setdefault(READERS_INFO, {})
    for subscription_id, patterns, owner_id in subscriptions:
        if not matches(patterns, event.type):
            continue
        reader = readers.get(owner_id)
        if reader is None:
            reader = readers[owner_id] = owner_reader(kernel.identity.authorizer, owner_id, event.tenant_id)
        if kernel.events.readable_by(reader, event.type, event.data):
            await kernel.jobs.enqueue(
                DELIVER_JOB,
                tenant_id=event.tenant_id,
                _job_id=f"{event.id}:{subscription_id}",
                subscription_id=str(subscription_id),
                event_id=str(event.id),
            )


class DeliveryFailed(Exception):
    """A delivery attempt did not get a 2xx answer; the job queue tries again later."""


async def deliver(ctx: JobContext, *, subscription_id: str, event_id: str) -> str:
    """Job: POST one event to one subscription; log the attempt; raise to be retried."""
    kernel: Kernel = ctx["kernel"]
    async with ctx["db_session"]() as session:
        subscription = (
            await session.execute(select(WebhookSubscription).where(WebhookSubscription.id == UUID(subscription_id)))
        ).scalar_one_or_none()
        if subscription is None or not subscription.enabled:
            return "skipped"  # deleted or switched off since the event was queued
        record = (
            await session.execute(select(EventRecord).where(EventRecord.id == UUID(event_id)))
        ).scalar_one_or_none()
        if record is None:
            return "skipped"  # past the event log's retention
        owner = owner_reader(kernel.identity.authorizer, subscription.created_by, subscription.tenant_id)
        if not kernel.events.readable_by(owner, record.type, record.data):
            return "skipped"  # the owner lost the right to read it since it was queued (a retry, a day later)
        count, first_at, delivered = (
            await session.execute(
                select(
                    func.count(),
                    func.min(WebhookAttempt.at),
                    func.coalesce(func.bool_or(WebhookAttempt.outcome == "delivered"), False),
                ).where(WebhookAttempt.subscription_id == subscription.id, WebhookAttempt.event_id == record.id)
            )
        ).one()
        if delivered:
            return "delivered"  # an earlier run got through (at-least-once jobs)
        secret = kernel.identity.box.decrypt(subscription.secret)
    payload = WebhookPayload(
        id=record.id, type=record.type, tenant_id=record.tenant_id, occurred_at=record.occurred_at, data=record.data
    )
    attempt = int(count) + 1
    response = await post_signed(kernel.settings, subscription.url, secret, payload, attempt=attempt)
    if response.ok:
        outcome = "delivered"
    elif response.status_code == 410:
        outcome = "disabled"
    else:
        job_try: int = ctx.get("job_try") or 1
        definition = kernel.jobs.definitions[DELIVER_JOB]
        now = utcnow()
        deadline = (first_at or now) + dt.timedelta(seconds=kernel.settings.webhook_retry_window_seconds)
        next_try = now + dt.timedelta(seconds=definition.backoff(job_try))
        outcome = "retrying" if next_try <= deadline and job_try < definition.max_tries else "failed"
    async with ctx["db_session"]() as session:
        await record_attempt(session, subscription, payload, attempt, outcome, response)
    if outcome == "retrying":
        raise DeliveryFailed(f"webhook {subscription.id}, event {record.id}: {response.summary}")
    if outcome == "failed":
        raise PermanentJobError(
            f"webhook {subscription.id}, event {record.id}: gave up after {attempt} attempts ({response.summary})"
        )
    return outcome
