"""Managing a tenant's webhook subscriptions: validation, the signing secret, the test ping, the attempt log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from sqlalchemy import select

from inopsio.crypto import new_token
from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.net import UnsafeUrlError
from inopsio.webhooks.delivery import PING_TYPE, check_webhook_url, post_signed, record_attempt
from inopsio.webhooks.models import WebhookAttempt, WebhookSubscription
from inopsio.webhooks.schemas import SubscriptionIn, SubscriptionPatch, WebhookPayload

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.events.schemas import EventReader, EventType
    from inopsio.kernel import Kernel
    from inopsio.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


async def validated_url(url: str, settings: Settings) -> str:
    """``url`` stripped, or a 422 problem saying why webhooks may not go there."""
    url = url.strip()
    try:
        await check_webhook_url(url, settings)
    except UnsafeUrlError as exc:
        raise Problem(
            422,
            "unsafe-url",
            f"Webhooks cannot be sent to this URL: {exc}.",
            errors=[{"pointer": "/url", "detail": str(exc)}],
        ) from exc
    return url


def validated_event_types(patterns: list[str], declared: Mapping[str, EventType], reader: EventReader) -> list[str]:
    """The patterns without duplicates, or a 422 problem naming each that matches no declared type, or
    a type ``reader`` (who sets the subscription up) may not read: a subscription never asks for
    more than its owner may see, even when the owner acts through an API key of narrower scope."""
    unknown, unreadable = [], []
    for index, pattern in enumerate(patterns):
        prefix = pattern[:-1] if pattern.endswith(".*") and pattern != ".*" else None
        matched = [
            t
            for name, t in declared.items()
            if pattern in ("*", name) or (prefix is not None and name.startswith(prefix))
        ]
        pointer = f"/event_types/{index}"
        if not matched:
            unknown.append({"pointer": pointer, "detail": f"{pattern!r} matches no declared event type"})
        else:
            lacking = sorted({t.name for t in matched if not reader.allowed(t.permission)})
            if lacking:
                shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
                unreadable.append(
                    {"pointer": pointer, "detail": f"{pattern!r} takes event types you may not read: {shown}"}
                )
    if unknown:
        raise Problem(
            422,
            "unknown-event-type",
            "Subscribe to declared event types (see GET /api/v1/events/catalog), a prefix such as "
            "'crm.deal.*', or '*'.",
            errors=unknown,
        )
    if unreadable:
        raise Problem(
            422,
            "unreadable-event-type",
            "A subscription carries only events its owner (who sets it up or last changes it) may read: "
            "name only event types (or prefixes of them) you may read.",
            errors=unreadable,
        )
    return list(dict.fromkeys(patterns))


class WebhookService:
    """One tenant's subscriptions; every change is written to the audit log with ``actor`` fields.

    Whoever creates or changes a subscription becomes its owner (``created_by``): it delivers only the
    events its owner may read at the time of each delivery (see ``docs/webhooks.md``).
    """

    def __init__(self, kernel: Kernel, tenant_id: UUID) -> None:
        self.kernel = kernel
        self.tenant_id = tenant_id

    def _new_secret(self) -> tuple[str, str]:
        secret = new_token(SECRET_PREFIX, 32)
        return secret, self.kernel.identity.box.encrypt(secret)

    @staticmethod
    async def _get(session: AsyncSession, subscription_id: UUID, *, lock: bool = False) -> WebhookSubscription:
        query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
        row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
        if row is None:
            raise Problem(404, "not-found", "No such webhook subscription.")
        return row

    async def create(
        self, data: SubscriptionIn, actor: dict[str, Any], reader: EventReader
    ) -> tuple[WebhookSubscription, str]:
        """A new subscription owned by ``reader`` (the actor), and its signing secret (in plain text:
        the caller shows it once)."""
        url = await validated_url(data.url, self.kernel.settings)
        event_types = validated_event_types(data.event_types, self.kernel.events.types, reader)
        secret, sealed = self._new_secret()
        async with self.kernel.db.session(self.tenant_id) as session:
            row = WebhookSubscription(
                tenant_id=self.tenant_id,
                url=url,
                event_types=event_types,
                description=data.description.strip(),
                enabled=data.enabled,
                secret=sealed,
                created_by=reader.user_id,
            )
            session.add(row)
            await session.flush()
            await audit.record(
                session,
                self.tenant_id,
                "webhook.created",
                subscription_id=str(row.id),
                url=url,
                event_types=event_types,
                **actor,
            )
        return row, secret

    async def list_all(self) -> list[WebhookSubscription]:
        async with self.kernel.db.session(self.tenant_id) as session:
            query = select(WebhookSubscription).order_by(WebhookSubscription.id.desc())
            return list((await session.execute(query)).scalars())

    async def get(self, subscription_id: UUID) -> WebhookSubscription:
        async with self.kernel.db.session(self.tenant_id) as session:
            return await self._get(session, subscription_id)

    async def update(
        self, subscription_id: UUID, data: SubscriptionPatch, actor: dict[str, Any], reader: EventReader
    ) -> WebhookSubscription:
        """Change the fields given; a change makes ``reader`` (the actor) the subscription's owner, so
        the event types it keeps must be ones the actor may read."""
        changes: dict[str, Any] = {}
        if not isinstance(data.url, msgspec.UnsetType):
            changes["url"] = await validated_url(data.url, self.kernel.settings)
        if not isinstance(data.event_types, msgspec.UnsetType):
            changes["event_types"] = validated_event_types(data.event_types, self.kernel.events.types, reader)
        if not isinstance(data.description, msgspec.UnsetType):
            changes["description"] = data.description.strip()
        if not isinstance(data.enabled, msgspec.UnsetType):
            changes["enabled"] = data.enabled
        async with self.kernel.db.session(self.tenant_id) as session:
            row = await self._get(session, subscription_id, lock=True)
            changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if changed and "event_types" not in changes:
                # The actor becomes the owner: the types kept must be readable by them too.
                validated_event_types(list(row.event_types), self.kernel.events.types, reader)
            for field, value in changed.items():
                setattr(row, field, value)
            if changed.get("enabled") is True:
                row.disabled_reason = None
            if changed:
                row.updated_at = utcnow()
                row.created_by = reader.user_id
                await audit.record(
                    session,
                    self.tenant_id,
                    "webhook.updated",
                    subscription_id=str(row.id),
                    fields=sorted(changed),
                    url=row.url,
                    **actor,
                )
        return row

    async def delete(self, subscription_id: UUID, actor: dict[str, Any]) -> None:
        """Remove a subscription with its attempt log; queued deliveries to it are dropped when they run."""
        async with self.kernel.db.session(self.tenant_id) as session:
            row = await self._get(session, subscription_id, lock=True)
            await session.delete(row)
            await audit.record(
                session, self.tenant_id, "webhook.deleted", subscription_id=str(row.id), url=row.url, **actor
            )

    async def rotate_secret(self, subscription_id: UUID, actor: dict[str, Any]) -> tuple[WebhookSubscription, str]:
        """Replace the signing secret at once; the old one stops being used for the next request."""
        secret, sealed = self._new_secret()
        async with self.kernel.db.session(self.tenant_id) as session:
            row = await self._get(session, subscription_id, lock=True)
            row.secret = sealed
            row.updated_at = utcnow()
            await audit.record(
                session, self.tenant_id, "webhook.secret_rotated", subscription_id=str(row.id), url=row.url, **actor
            )
        return row, secret

    async def ping(self, subscription_id: UUID) -> WebhookAttempt:
        """Send a signed ``webhook.ping`` now (enabled or not), once, and log it like any attempt."""
        async with self.kernel.db.session(self.tenant_id) as session:
            row = await self._get(session, subscription_id)
            secret = self.kernel.identity.box.decrypt(row.secret)
        payload = WebhookPayload(
            id=new_id(),
            type=PING_TYPE,
            tenant_id=self.tenant_id,
            occurred_at=utcnow(),
            data={"subscription_id": str(row.id), "message": "A test delivery from Inopsio."},
        )
        response = await post_signed(self.kernel.settings, row.url, secret, payload, attempt=1)
        outcome = "delivered" if response.ok else "disabled" if response.status_code == 410 else "failed"
        async with self.kernel.db.session(self.tenant_id) as session:
            return await record_attempt(session, row, payload, 1, outcome, response)

    async def attempts(self, subscription_id: UUID, *, before: UUID | None, limit: int) -> list[WebhookAttempt]:
        """Attempts to one subscription, newest first, older than the attempt ``before``."""
        async with self.kernel.db.session(self.tenant_id) as session:
            await self._get(session, subscription_id)
            query = (
                select(WebhookAttempt)
                .where(WebhookAttempt.subscription_id == subscription_id)
                .order_by(WebhookAttempt.id.desc())
                .limit(limit)
            )
            if before is not None:
                query = query.where(WebhookAttempt.id < before)
            return list((await session.execute(query)).scalars())
