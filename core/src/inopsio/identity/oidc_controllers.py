"""OIDC API: tenant admins configure sign-in providers; users sign in through them and manage the
provider accounts linked to theirs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import Cookie
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect
from sqlalchemy import select

from inopsio.crypto import new_token
from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT, require_user
from inopsio.identity.controllers import client_of
from inopsio.identity.models import OidcProvider
from inopsio.identity.oidc import STATE_SECONDS, OidcService, RoleMapping
from inopsio.identity.oidc_links import IdentityLinks, IdentityOut, LinkConfirmationSent
from inopsio.identity.oidc_pages import link_sent_page, sign_in_failed_page
from inopsio.site_paths import is_site_path

PROVIDER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,49}$")
SETTINGS_WRITE = "kernel.settings.write"
#: The cookie binding a sign-in a browser started to that browser (``__Host-`` where it can be kept).
BINDING_COOKIE = "__Host-inopsio_oidc"
INSECURE_BINDING_COOKIE = "inopsio_oidc"
MailedToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


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
    #: Who last saved it: sign-ins through it never yield more than this member holds now
    #: (``None``: saved before that rule; capped at the built-in admin role).
    configured_by: UUID | None
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
        configured_by=provider.configured_by,
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
        """Create or change a provider. Its discovery document is fetched and checked first.

        The caller becomes its configurer: no mapped role may grant more than they hold, and sign-ins
        through it never yield more than they hold at that moment.
        """
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
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            await service.check_role_mapping(session, data.role_mapping, actor_id, tenant.id)
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
            provider.configured_by = actor_id
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


def _binding_cookie_name(kernel: KernelDep, request: Request[Any, Any, Any]) -> str:
    secure = kernel.identity.web_sessions.is_secure(request.scope)
    return BINDING_COOKIE if secure else INSECURE_BINDING_COOKIE


def _binding_cookie(kernel: KernelDep, request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=_binding_cookie_name(kernel, request),
        value=value,
        path="/",
        secure=kernel.identity.web_sessions.is_secure(request.scope),
        httponly=True,
        # Lax: the provider sends the browser back with a top-level GET, which carries it.
        samesite="lax",
        max_age=max_age,
    )


def _is_browser(request: Request[Any, Any, Any]) -> bool:
    """A browser navigating (not an API client): it asks for HTML."""
    return "text/html" in request.headers.get("accept", "")


class OidcSignInController(Controller):
    path = "/api/v1/auth/oidc"
    tags = ["auth"]

    @get("/{name:str}/start", status_code=302, opt={PUBLIC_OPT: True})
    async def start(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        name: FromPath[str],
        next_path: Annotated[str | None, QueryParameter(name="next", max_length=2000)] = None,
    ) -> Redirect:
        """Send the browser to the provider to sign in to this tenant.

        A browser (one asking for HTML) gets a cookie its callback must bring back, and is signed in
        with a session cookie at the end, then sent to ``next`` (a path on this site).
        """
        browser_secret = new_token() if _is_browser(request) else None
        url = await OidcService(kernel).start(
            tenant,
            name,
            browser_secret=browser_secret,
            next_path=next_path if next_path and is_site_path(next_path) else "/",
        )
        cookies = [_binding_cookie(kernel, request, browser_secret, STATE_SECONDS)] if browser_secret else []
        return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"}, cookies=cookies)

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
    ) -> Response[Any]:
        """Where the provider sends the browser back.

        An API client gets a token pair (200), or, for a provider account not linked to any account
        yet, 202 ``oidc-link-confirmation-sent`` whoever the e-mail address belongs to: its holder
        must confirm the link (mailed link, or password). A browser that started the sign-in gets a
        session cookie and is sent on, or a page saying what happened.
        """
        service = OidcService(kernel)
        client = client_of(request)
        web_sessions = kernel.identity.web_sessions
        no_store = {"Cache-Control": "no-store"}
        cleared = _binding_cookie(kernel, request, "", 0)
        try:
            pending = await service.take_state(
                tenant, name, oauth_state, request.cookies.get(_binding_cookie_name(kernel, request))
            )
            if pending.browser_binding is None:
                api = await service.finish(
                    tenant,
                    pending,
                    code=code,
                    error=error,
                    client=client,
                    open_session=kernel.identity.accounts._open_session,
                )
                if isinstance(api, LinkConfirmationSent) and _is_browser(request):
                    return await link_sent_page(request, name, api)
                return Response(
                    api, status_code=202 if isinstance(api, LinkConfirmationSent) else 200, headers=no_store
                )
            web = await service.finish(
                tenant, pending, code=code, error=error, client=client, open_session=web_sessions.open
            )
        except Problem as exc:
            if not _is_browser(request):
                raise
            # The path's name may be anything someone put in a link: only a provider's name is shown.
            response = await sign_in_failed_page(request, name if PROVIDER_NAME_RE.match(name) else None, exc)
            response.set_cookie(cleared)
            return response
        if isinstance(web, LinkConfirmationSent):
            response = await link_sent_page(request, name, web)
            response.set_cookie(cleared)
            return response
        return Response(
            None,
            status_code=303,
            headers={"Location": pending.next_path, **no_store},
            cookies=[*web_sessions.cookies(request.scope, web), cleared],
        )


class LinkTokenIn(msgspec.Struct, forbid_unknown_fields=True):
    token: MailedToken


class LinkPasswordIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The pending token the provider sign-in answered with.
    token: MailedToken
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    totp_code: Annotated[str, msgspec.Meta(max_length=12)] | None = None
    recovery_code: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class IdentityConfirmationController(Controller):
    path = "/api/v1/auth/identities"
    tags = ["auth"]

    @post("/confirm", status_code=200, opt={PUBLIC_OPT: True})
    async def confirm_by_mail(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[LinkTokenIn]
    ) -> IdentityOut:
        """Link a provider account with the token mailed to the address it gave (single use, one hour).

        For an address without an account, the account is created (verified: the mailbox was reached).
        The next sign-in through the provider then signs its holder in.
        """
        return await IdentityLinks(kernel).confirm_by_mail(tenant, data.token, client_of(request))


class MyIdentitiesController(Controller):
    path = "/api/v1/me/identities"
    tags = ["me"]

    @get("/")
    async def list_identities(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant
    ) -> list[IdentityOut]:
        """The provider accounts linked to yours (each signs you in through this tenant's providers with
        its issuer)."""
        _, user_id = require_user(request)
        return await IdentityLinks(kernel).linked(tenant, user_id)

    @post("/confirm", status_code=200)
    async def confirm_signed_in(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        data: JSONBody[LinkPasswordIn],
    ) -> IdentityOut:
        """Link the provider account of a pending sign-in to yours: its pending token, and your password
        (and ``totp_code`` or ``recovery_code`` with two-factor authentication) again, so a session opened
        through a provider cannot link more provider accounts on its own."""
        _, user_id = require_user(request)
        return await IdentityLinks(kernel).confirm_signed_in(
            tenant,
            user_id,
            data.token,
            data.password,
            client_of(request),
            totp_code=data.totp_code,
            recovery_code=data.recovery_code,
        )

    @delete("/{identity_id:uuid}", status_code=204)
    async def unlink(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, identity_id: FromPath[UUID]
    ) -> None:
        """Unlink a provider account: it signs you in no more until you confirm it again."""
        _, user_id = require_user(request)
        await IdentityLinks(kernel).unlink(tenant, user_id, identity_id, client_of(request))
