"""Who is acting on the CRM: the signed-in user or API key, with the CRM powers their role grants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from inopsio.errors import Problem
from inopsio.identity.principal import principal_of
from inopsio.tenancy.schemas import TenantInfo
from inopsio_crm.permissions import READ_ALL_LEADS


@dataclass(frozen=True)
class Viewer:
    """Who acts, and what of the leads they may see and do."""

    user_id: UUID | None
    read_all: bool
    can_assign: bool
    label: str = ""


def has_permission(request: Any, tenant: TenantInfo, permission: str) -> bool:
    """The kernel's rule: a user's role; an API key's own list *and* what its owner may do now."""
    principal = principal_of(request.scope)
    if principal is None:
        return False
    return bool(request.app.state.kernel.identity.authorizer.allows(principal, tenant.id, permission))


def viewer_of(request: Any, tenant: TenantInfo) -> Viewer:
    principal = principal_of(request.scope)
    if principal is None:  # the access guard runs first; this only keeps the types honest
        raise Problem(401, "authentication-required", "Sign in, or send an access token or API key.")
    return Viewer(
        user_id=principal.user_id,
        read_all=has_permission(request, tenant, READ_ALL_LEADS),
        can_assign=has_permission(request, tenant, "crm.leads.assign"),
        label=principal.label,
    )
