"""OIDC API: tenant admins configure sign-in providers; users sign in through them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect
from sqlalchemy import select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT, require_user
from inopsio.identity.controllers import client_of
from inopsio.identity.models import OidcProvider
from inopsio.identity.oidc import OidcService, RoleMapping
from inopsio.identity.services import TokenPair

PROVIDER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,49}$")
SETTINGS_WRITE = "kernel.settings.write"


class OidcProviderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    issuer: Annotated[str, msgspec.Meta(min_length=8, max_length=500)]
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    #: Required when the provider is created; left out on a change, the stored one is kept.
    client_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    scopes: Annotated[str, msgspec.Meta(min_length=6, max_length=300)] = "openid email profile"
    role_mapping: RoleMapping = msgspec.field(default_factory=RoleMapping)
    enabled: bool = True


class OidcProviderOut(msgspec.Struct, kw_only=True):
    name: str
    issuer: str
    client_id: str
    scopes: str
    role_mapping: RoleMapping
    enabled: bool
    #: The callback address to register at the provider.
    redirect_uri: str
    created_at: dt.datetime
    updated_at: dt.datetime


def _out(service: OidcService, tenant: Any, provider: OidcProvider) -> OidcProviderOut:
    return OidcProviderOut(
        name=provider.name,
        issuer=provider.issuer,
        client_id=provider.client_id,
        scopes=provider.scopes,
        role_mapping=msgspec.convert(provider.role_mapping or {}, RoleMapping),
        enabled=provider.enabled,
        redirect_uri=service.redirect_uri(tenant, provider.name),
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


def _check_name(name: str) -> None:
    if not PROVIDER_NAME_RE.match(name):
        detail = "A provider name is 2-50 lower-case letters, digits, '-' or '_', starting with a letter."
        raise Problem(422, "invalid-name", detail, errors=[{"pointer": "/name", "detail": detail}])


class OidcProvidersController(Controller):
    path = "/api/v1/oidc/providers"
    tags = ["oidc"]

    @get("/", opt={PERMISSION_OPT: SETTINGS_WRITE})
    async def list_providers(self, kernel: KernelDep, tenant: CurrentTenant) -> list[OidcProviderOut]:
        """The tenant's sign-in providers (client secrets are never returned)."""
        service = OidcService(kernel)
        async with kernel.db.session(tenant.id) as session:
            rows = (await session.execute(select(OidcProvider).order_by(OidcProvider.name))).scalars().all()
        return [_out(service, tenant, p) for p in rows]

    @put("/{name:str}", opt={PERMISSION_OPT: SETTINGS_WRITE})
    async def configure(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        name: FromPath[str],
        data: JSONBody[OidcProviderIn],
    ) -> OidcProviderOut:
        """Create or change a provider. Its discovery document is fetched and checked first."""
        _, actor_id = require_user(request)
        _check_name(name)
        if "openid" not in data.scopes.split():
            raise Problem(
                422,
                "invalid-scopes",
                "The scopes must include openid.",
                errors=[{"pointer": "/scopes", "detail": "openid is required"}],
            )
        service = OidcService(kernel)
        discovery = await service.discover(data.issuer.strip(), use_cache=False)
        actor_role = kernel.identity.authorizer.role_of(actor_id, tenant.id)
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            await service.check_role_mapping(session, data.role_mapping, actor_role)
            provider = (
                await session.execute(select(OidcProvider).where(OidcProvider.name == name).with_for_update())
            ).scalar_one_or_none()
            created = provider is None
            if provider is None:
                if data.client_secret is None:
                    raise Problem(
                        422,
                        "client-secret-required",
                        "A new provider needs its client secret.",
                        errors=[{"pointer": "/client_secret", "detail": "required"}],
                    )
                provider = OidcProvider(tenant_id=tenant.id, name=name)
                session.add(provider)
            # The issuer as the provider spells it: ID tokens carry exactly this value.
            provider.issuer = discovery.issuer
            provider.client_id = data.client_id
            if data.client_secret is not None:
                provider.client_secret = kernel.identity.box.encrypt(data.client_secret)
            provider.scopes = " ".join(data.scopes.split())
            provider.role_mapping = msgspec.to_builtins(data.role_mapping)
            provider.enabled = data.enabled
            await session.flush()
            await audit.record(
                session,
                tenant.id,
                "oidc.configured",
                actor_id=actor_id,
                ip=client.ip,
                user_agent=client.user_agent,
                provider=name,
                issuer=provider.issuer,
                created=created,
                enabled=provider.enabled,
                secret_changed=data.client_secret is not None,
                role_mapping=provider.role_mapping,
            )
        return _out(service, tenant, provider)

    @delete("/{name:str}", status_code=204, opt={PERMISSION_OPT: SETTINGS_WRITE})
    async def remove(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, name: FromPath[str]
    ) -> None:
        """Remove a provider. Accounts linked through it keep their links (their issuer may come back)."""
        _, actor_id = require_user(request)
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            provider = (
                await session.execute(select(OidcProvider).where(OidcProvider.name == name))
            ).scalar_one_or_none()
            if provider is None:
                raise Problem(404, "not-found", "No such sign-in provider.")
            await session.delete(provider)
            await audit.record(
                session,
                tenant.id,
                "oidc.removed",
                actor_id=actor_id,
                ip=client.ip,
                user_agent=client.user_agent,
                provider=name,
                issuer=provider.issuer,
            )


class OidcSignInController(Controller):
    path = "/api/v1/auth/oidc"
    tags = ["auth"]

    @get("/{name:str}/start", status_code=302, opt={PUBLIC_OPT: True})
    async def start(self, kernel: KernelDep, tenant: CurrentTenant, name: FromPath[str]) -> Redirect:
        """Send the browser to the provider to sign in to this tenant."""
        url = await OidcService(kernel).start(tenant, name)
        return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})

    @get("/{name:str}/callback", opt={PUBLIC_OPT: True})
    async def callback(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        name: FromPath[str],
        code: Annotated[str | None, QueryParameter(name="code", max_length=2000)] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state", max_length=200)] = None,
        error: Annotated[str | None, QueryParameter(name="error", max_length=200)] = None,
    ) -> TokenPair:
        """Where the provider sends the browser back: signs the user in and returns their tokens."""
        return await OidcService(kernel).finish(
            tenant, name, code=code, state=oauth_state, error=error, client=client_of(request)
        )
