"""Who is making a request, once authenticated: a user with a session, or an API key."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import msgspec

PRINCIPAL_KEY = "inopsio_principal"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["user", "api_key"]
    tenant_id: UUID
    #: The user, or the user who created the API key.
    user_id: UUID | None
    label: str
    session_id: UUID | None = None
    api_key_id: UUID | None = None
    #: For API keys: exactly what the key may do. For users: ``None`` (ask RBAC).
    permissions: frozenset[str] | None = None
    #: For users: signed in with a second factor (see the tenant setting ``require_2fa``).
    mfa: bool = False

    @property
    def rate_key(self) -> str:
        return f"key:{self.api_key_id}" if self.kind == "api_key" else f"user:{self.user_id}"


def principal_of(scope: Any) -> Principal | None:
    state = scope.get("state") if isinstance(scope, dict) else None
    return state.get(PRINCIPAL_KEY) if state else None
