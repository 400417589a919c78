"""The audit log: every security-relevant action, per tenant, append-only for the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from inopsio.db.base import new_id
from inopsio.events.bus import add_to_outbox
from inopsio.identity.models import AuditEntry

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

#: Actions the kernel records; plugins may record their own, named ``<plugin>.<thing>.<happened>``.
KERNEL_ACTIONS = (
    "auth.signin.succeeded",
    "auth.signin.failed",
    "auth.signout",
    "auth.session.revoked",
    "auth.refresh_token.reused",
    "auth.password.changed",
    "auth.password.reset_requested",
    "auth.password.reset",
    "auth.email.verified",
    "auth.totp.enabled",
    "auth.totp.disabled",
    "auth.recovery_code.used",
    "auth.recovery_codes.regenerated",
    "member.invited",
    "member.joined",
    "member.role_changed",
    "member.removed",
    "role.created",
    "role.changed",
    "role.deleted",
    "api_key.created",
    "api_key.revoked",
    "api_key.owner_changed",
    "tenant.created",
    "tenant.suspended",
    "tenant.resumed",
    "tenant.settings_changed",
    "oidc.configured",
    "oidc.removed",
    "identity.link_requested",
    "identity.linked",
    "identity.unlinked",
)


async def record(
    session: AsyncSession,
    tenant_id: UUID,
    action: str,
    *,
    actor_id: UUID | None = None,
    actor_label: str = "",
    ip: str = "",
    user_agent: str = "",
    outcome: str = "success",
    **details: Any,
) -> AuditEntry:
    """Add an entry in the caller's tenant-scoped transaction (it commits or rolls back with it)."""
    entry = AuditEntry(
        id=new_id(),
        tenant_id=tenant_id,
        action=action,
        actor_id=actor_id,
        actor_label=actor_label[:320],
        ip=ip[:64],
        user_agent=user_agent[:300],
        outcome=outcome,
        details=details,
    )
    session.add(entry)
    # Every entry is also a security event, for the security module (and webhooks) to consume.
    add_to_outbox(
        session,
        tenant_id,
        AUDIT_EVENT,
        msgspec.to_builtins(
            AuditRecorded(
                audit_id=entry.id,
                action=action,
                actor_id=actor_id,
                actor_label=entry.actor_label,
                ip=entry.ip,
                user_agent=entry.user_agent,
                outcome=outcome,
                details=details,
            )
        ),
        entry.actor_label or None,
    )
    return entry


AUDIT_EVENT = "kernel.audit.recorded"


class AuditRecorded(msgspec.Struct, kw_only=True):
    """Data of ``kernel.audit.recorded``: one audit log entry, as a security event."""

    audit_id: UUID
    action: str
    actor_id: UUID | None
    actor_label: str
    ip: str
    user_agent: str
    outcome: str
    details: dict[str, Any]
