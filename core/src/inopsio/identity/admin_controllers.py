"""Tenant administration API: API keys, the audit log and the tenant's settings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.api_keys import ApiKeyStatus, ApiKeyView
from inopsio.identity.audit_search import AuditFilter, search_audit
from inopsio.identity.authentication import PERMISSION_OPT, require_user
from inopsio.identity.controllers import client_of
from inopsio.identity.models import AuditEntry, User
from inopsio.identity.principal import principal_of
from inopsio.tenancy.schemas import TenantSettings, TenantSettingsPatch

PermissionName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ACTION_FILTER = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$"


def _client_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    client = client_of(request)
    return {"ip": client.ip, "user_agent": client.user_agent}


def _actor(request: Request[Any, Any, Any]) -> tuple[UUID | None, str]:
    """Who acts, for the audit log: the user, or an API key on behalf of the user who made it."""
    principal = principal_of(request.scope)
    if principal is None:
        return None, ""
    return principal.user_id, f"api key {principal.label}" if principal.kind == "api_key" else ""


# -- API keys ---------------------------------------------------------------------------------------


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    permissions: Annotated[list[PermissionName], msgspec.Meta(min_length=1, max_length=200)]
    expires_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class ApiKeyOwner(msgspec.Struct, kw_only=True):
    """The member a key acts for: its creator, until an admin hands it over."""

    user_id: UUID
    email: str
    name: str


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    prefix: str
    #: What the key was given.
    permissions: list[str]
    #: The owner's id (the creator until the key was handed over); ``null`` once the account was deleted.
    created_by: UUID | None
    #: ``null`` once the owner's account was deleted.
    owner: ApiKeyOwner | None
    status: ApiKeyStatus
    #: What the key can do now: its permissions that its owner holds now; empty unless ``active``.
    effective_permissions: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked: bool
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut, kw_only=True):
    #: The key itself: shown this once, never again (only its digest is stored).
    key: str


class ApiKeyOwnerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UUID


def _key_out(view: ApiKeyView) -> dict[str, Any]:
    row, owner = view.key, view.owner
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "permissions": list(row.permissions),
        "created_by": row.created_by,
        "owner": ApiKeyOwner(user_id=owner.id, email=owner.email, name=owner.name) if owner else None,
        "status": view.status,
        "effective_permissions": view.effective_permissions,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "revoked": row.revoked_at is not None,
        "revoked_at": row.revoked_at,
    }


class ApiKeysController(Controller):
    path = "/api/v1/api-keys"
    tags = ["api keys"]

    @post("/", status_code=201, opt={PERMISSION_OPT: "kernel.api_keys.write"})
    async def create_key(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[ApiKeyIn]
    ) -> ApiKeyCreated:
        """Create a key limited to permissions you hold. The key is in this response only."""
        _, user_id = require_user(request)
        if not data.name.strip():
            raise Problem(422, "invalid-name", "Give the key a name.", errors=[{"pointer": "/name", "detail": "blank"}])
        keys = kernel.identity.api_keys
        row, key = await keys.create(
            tenant.id, user_id, data.name, data.permissions, data.expires_at, **_client_fields(request)
        )
        async with kernel.db.session(tenant.id) as session:
            owner = await session.get(User, user_id)
        return ApiKeyCreated(**_key_out(keys.view(tenant.id, row, owner, row.created_at)), key=key)

    @get("/", opt={PERMISSION_OPT: "kernel.api_keys.write"})
    async def list_keys(self, kernel: KernelDep, tenant: CurrentTenant) -> list[ApiKeyOut]:
        """Every key of the tenant, newest first, revoked ones included, with its owner, status and what
        it can do now (its permissions that its owner still holds); never the secret."""
        return [ApiKeyOut(**_key_out(view)) for view in await kernel.identity.api_keys.list_keys(tenant.id)]

    @post("/{key_id:uuid}/owner", status_code=200, opt={PERMISSION_OPT: "kernel.api_keys.write"})
    async def hand_over_key(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        key_id: FromPath[UUID],
        data: JSONBody[ApiKeyOwnerIn],
    ) -> ApiKeyOut:
        """Hand a key to another member (say, when its owner leaves): from now on it can do what it lists
        and the new owner holds. You must hold every permission the key lists. Audited."""
        _, actor_id = require_user(request)
        view = await kernel.identity.api_keys.hand_over(
            tenant.id, key_id, data.user_id, actor_id=actor_id, **_client_fields(request)
        )
        return ApiKeyOut(**_key_out(view))

    @delete("/{key_id:uuid}", status_code=204, opt={PERMISSION_OPT: "kernel.api_keys.write"})
    async def revoke_key(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, key_id: FromPath[UUID]
    ) -> None:
        """Revoke a key in every process within moments; revoking it again changes nothing."""
        actor_id, actor_label = _actor(request)
        await kernel.identity.api_keys.revoke(
            tenant.id, key_id, actor_id=actor_id, actor_label=actor_label, **_client_fields(request)
        )


# -- audit log ---------------------------------------------------------------------------------------


class AuditEntryOut(msgspec.Struct, kw_only=True):
    id: UUID
    occurred_at: dt.datetime
    action: str
    actor_id: UUID | None
    actor_label: str
    ip: str
    user_agent: str
    outcome: str
    details: dict[str, Any]


class AuditPage(msgspec.Struct, kw_only=True):
    items: list[AuditEntryOut]
    #: Pass as ``before`` for the next (older) page; ``null`` on the last page.
    next_cursor: str | None


def _entry_out(row: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=row.id,
        occurred_at=row.occurred_at,
        action=row.action,
        actor_id=row.actor_id,
        actor_label=row.actor_label,
        ip=row.ip,
        user_agent=row.user_agent,
        outcome=row.outcome,
        details=dict(row.details or {}),
    )


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/", opt={PERMISSION_OPT: "kernel.audit.read"})
    async def list_entries(
        self,
        kernel: KernelDep,
        tenant: CurrentTenant,
        action: Annotated[
            str | None,
            QueryParameter(max_length=100, pattern=ACTION_FILTER, description="Exact action, or a prefix: auth.*"),
        ] = None,
        actor_id: Annotated[UUID | None, QueryParameter()] = None,
        outcome: Annotated[str | None, QueryParameter(max_length=16)] = None,
        since: Annotated[dt.datetime | None, QueryParameter(description="From this time (inclusive)")] = None,
        until: Annotated[dt.datetime | None, QueryParameter(description="Before this time (exclusive)")] = None,
        before: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the last page")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AuditPage:
        """The tenant's audit log, newest first, filtered and paged by cursor."""
        where = AuditFilter(
            action=action,
            actor_id=actor_id,
            outcome=outcome,
            since=_aware(since, "since"),
            until=_aware(until, "until"),
        )
        async with kernel.db.session(tenant.id) as session:
            rows, next_cursor = await search_audit(session, where, before=before, limit=limit)
        return AuditPage(items=[_entry_out(r) for r in rows], next_cursor=next_cursor)


def _aware(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise Problem(
            400,
            "timezone-required",
            f"{name} needs a time zone, e.g. 2025-01-31T12:00:00Z.",
            errors=[{"pointer": f"/{name}", "source": "query", "detail": "no time zone"}],
        )
    return value


# -- tenant settings --------------------------------------------------------------------------------


class TenantSettingsController(Controller):
    path = "/api/v1/tenant/settings"
    tags = ["tenant"]

    @get("/", opt={PERMISSION_OPT: "kernel.settings.write"})
    async def get_settings(self, kernel: KernelDep, tenant: CurrentTenant) -> TenantSettings:
        """The tenant's settings as stored now (display name, locale, time zone, currency, branding, modules)."""
        return (await kernel.tenants.get(tenant.id)).settings

    @patch("/", opt={PERMISSION_OPT: "kernel.settings.write"})
    async def update_settings(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        data: JSONBody[TenantSettingsPatch],
    ) -> TenantSettings:
        """Change the fields given, keep the others."""
        before = (await kernel.tenants.get(tenant.id)).settings
        after = (await kernel.tenants.update_settings(tenant.id, data)).settings
        changed = [f for f in TenantSettings.__struct_fields__ if getattr(before, f) != getattr(after, f)]
        if changed:
            actor_id, actor_label = _actor(request)
            async with kernel.db.session(tenant.id) as session:
                await audit.record(
                    session,
                    tenant.id,
                    "tenant.settings_changed",
                    actor_id=actor_id,
                    actor_label=actor_label,
                    fields=changed,
                    **_client_fields(request),
                )
        return after
