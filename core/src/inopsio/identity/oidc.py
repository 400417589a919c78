"""OIDC sign-in per tenant: provider configuration, the authorization-code flow with PKCE, and the role cap.

A sign-in starts by storing its state, nonce and PKCE verifier in Redis under the random ``state``
(bound to the tenant and provider, ten minutes, single use; for a browser also to a cookie, so a
callback address cannot be replayed in someone else's browser) and sending the browser to the
provider. The callback spends the state, exchanges the code, validates the ID token (signature
against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``) and finds the user by (issuer,
subject). An unknown (issuer, subject) signs nobody in: it becomes a pending link that the holder
of the address must confirm (``identity.oidc_links``).

A provider never yields more than the member who configured it holds (``configured_by``): at every
sign-in the signing-in member's permissions here must be within the configurer's current ones (the
built-in ``admin`` role's for a provider saved before the rule; only an owner's provider signs in an
owner), a new member gets the mapped role only within them, and a provider whose configurer left
the tenant signs nobody in (:class:`RoleCap`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import httpx
import msgspec
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from inopsio.crypto import digest
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.models import CustomRole, Membership, OidcProvider, User, UserIdentity
from inopsio.identity.oidc_links import IdentityLinks, LinkConfirmationSent
from inopsio.identity.rbac import BUILTIN_ROLES
from inopsio.identity.services import ClientInfo, normalise_email
from inopsio.names import to_one_line
from inopsio.net import UnsafeUrlError, outbound_client
from inopsio.tenancy.addresses import tenant_url

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.identity.oidc")

STATE_SECONDS = 600
DISCOVERY_CACHE_SECONDS = 300
#: Signature algorithms accepted on ID tokens (never ``none`` nor HMAC with the client secret).
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
CLOCK_LEEWAY_SECONDS = 60
#: What a successful sign-in opens: a token pair for the API, a web session for a browser.
OpenedT = TypeVar("OpenedT")
Opener = Callable[["AsyncSession", User, "TenantInfo", ClientInfo], Awaitable[OpenedT]]
ROLE_ABOVE_PROVIDER = "oidc-role-above-provider"
PROVIDER_ORPHANED = "oidc-provider-orphaned"


class RoleMapping(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which role a new member gets: the ID-token ``claim``'s value(s) looked up in ``map``."""

    claim: str = "groups"
    map: dict[str, str] = msgspec.field(default_factory=dict)
    default_role: str | None = None


class Discovery(msgspec.Struct, kw_only=True):
    """The parts of a provider's ``/.well-known/openid-configuration`` we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    response_types_supported: list[str] = msgspec.field(default_factory=list)
    token_endpoint_auth_methods_supported: list[str] = msgspec.field(default_factory=lambda: ["client_secret_basic"])


class RoleCap(NamedTuple):
    """What a provider's configurer holds: a sign-in through it may yield no more.

    The owner role counts apart from its permissions: an admin may hold every permission there is
    and still not make or unmake owners.
    """

    permissions: frozenset[str]
    owner: bool

    def beyond(self, role: str, permissions: Iterable[str]) -> list[str]:
        """What ``role`` (granting ``permissions``) holds above the cap; empty when it is within."""
        above = sorted(set(permissions) - self.permissions)
        if role == "owner" and not self.owner:
            above.insert(0, "the owner role")
        return above


class PendingSignIn(msgspec.Struct, kw_only=True):
    """What the callback needs, kept in Redis between start and callback."""

    tenant_id: str
    provider: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    #: For a sign-in started by a browser: the digest of the cookie the callback must bring back.
    browser_binding: str | None = None
    #: Where a browser goes once signed in (a path on this site).
    next_path: str = "/"


def _unprocessable(code: str, detail: str, pointer: str) -> Problem:
    return Problem(422, code, detail, errors=[{"pointer": pointer, "detail": detail}])


def choose_role(mapping: RoleMapping, claims: dict[str, Any], existing_roles: set[str]) -> str:
    """The role of a new member: the strongest mapped role that exists, else the default, else member.

    A claim may hold one value or a list. ``owner`` is only ever given by an explicit map entry.
    """
    raw = claims.get(mapping.claim)
    if isinstance(raw, str):
        values = [raw]
    elif isinstance(raw, list):
        values = [v for v in raw if isinstance(v, str)]
    else:
        values = []
    matched = {mapping.map[v] for v in values if v in mapping.map} & existing_roles
    if matched:
        builtin = [r for r in BUILTIN_ROLES if r in matched]
        # Custom roles have no rank among themselves: take the first by name, after any built-in.
        return builtin[0] if builtin else sorted(matched)[0]
    default = mapping.default_role
    if default and default != "owner" and default in existing_roles:
        return default
    return "member"


class OidcService:
    """OIDC configuration and sign-in for the tenants of one installation."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.settings = kernel.settings
        self.redis = kernel.redis
        self.prefix = f"{self.settings.redis_namespace}:oidc"

    # -- configuration -------------------------------------------------------------------------------

    def redirect_uri(self, tenant: TenantInfo, name: str) -> str:
        """The callback address to register at the provider."""
        return tenant_url(self.settings, tenant, f"/api/v1/auth/oidc/{quote(name, safe='')}/callback")

    def check_issuer_url(self, issuer: str) -> None:
        parts = urlsplit(issuer)
        allowed = ("https",) if self.settings.is_production else ("https", "http")
        if parts.scheme not in allowed or not parts.hostname:
            wanted = "an https URL" if self.settings.is_production else "an http(s) URL"
            raise _unprocessable("invalid-issuer", f"The issuer must be {wanted}.", "/issuer")
        if parts.query or parts.fragment:
            raise _unprocessable("invalid-issuer", "The issuer URL has no query or fragment.", "/issuer")

    async def discover(self, issuer: str, *, use_cache: bool = True) -> Discovery:
        """Fetch and check the provider's discovery document; 422 when unreachable or not OIDC."""
        self.check_issuer_url(issuer)
        cache_key = f"{self.prefix}:discovery:{hashlib.sha256(issuer.encode()).hexdigest()}"
        if use_cache:
            cached = await self.redis.get(cache_key)
            if cached:
                return msgspec.json.decode(cached, type=Discovery)
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with outbound_client(self.settings, timeout=5.0) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
        except UnsafeUrlError as exc:
            raise _unprocessable("issuer-not-allowed", f"The issuer cannot be called: {exc}.", "/issuer") from None
        except httpx.HTTPError as exc:
            raise _unprocessable(
                "issuer-unreachable", f"Could not read {url}: {type(exc).__name__}.", "/issuer"
            ) from None
        if response.status_code != 200:
            raise _unprocessable(
                "issuer-not-oidc",
                f"{url} answered {response.status_code}; this is not an OpenID Connect issuer.",
                "/issuer",
            )
        try:
            document = msgspec.json.decode(response.content, type=Discovery)
        except msgspec.DecodeError as exc:
            raise _unprocessable(
                "issuer-not-oidc", f"{url} is not an OpenID Connect discovery document: {exc}.", "/issuer"
            ) from None
        if document.issuer.rstrip("/") != issuer.rstrip("/"):
            raise _unprocessable(
                "issuer-mismatch",
                f"The discovery document names the issuer {document.issuer!r}, not {issuer!r}.",
                "/issuer",
            )
        if document.response_types_supported and "code" not in document.response_types_supported:
            raise _unprocessable(
                "issuer-not-oidc", "The provider does not offer the authorization code flow.", "/issuer"
            )
        for endpoint in (document.authorization_endpoint, document.token_endpoint, document.jwks_uri):
            self.check_issuer_url(endpoint)
        await self.redis.set(cache_key, msgspec.json.encode(document), ex=DISCOVERY_CACHE_SECONDS)
        return document

    async def existing_roles(self, session: AsyncSession) -> set[str]:
        custom = (await session.execute(select(CustomRole.name))).scalars()
        return {*BUILTIN_ROLES, *custom}

    async def check_role_mapping(
        self, session: AsyncSession, mapping: RoleMapping, actor_id: UUID, tenant_id: UUID
    ) -> None:
        """Every mapped role must exist; ``owner`` is never a default, and only owners may map to it.

        No mapped role may grant a permission the actor lacks: a provider is capped at its
        configurer's permissions when people sign in through it, and a mapping above them would
        only fail later, at someone's first sign-in.
        """
        authorizer = self.kernel.identity.authorizer
        roles = await self.existing_roles(session)
        for value, role in mapping.map.items():
            if role not in roles:
                raise _unprocessable(
                    "unknown-role", f"There is no role {role!r} in this tenant.", f"/role_mapping/map/{value}"
                )
        if mapping.default_role is not None:
            if mapping.default_role == "owner":
                raise _unprocessable(
                    "invalid-role-mapping",
                    "owner cannot be the default role; map a claim value to it explicitly.",
                    "/role_mapping/default_role",
                )
            if mapping.default_role not in roles:
                raise _unprocessable(
                    "unknown-role",
                    f"There is no role {mapping.default_role!r} in this tenant.",
                    "/role_mapping/default_role",
                )
        if "owner" in mapping.map.values() and authorizer.role_of(actor_id, tenant_id) != "owner":
            raise Problem(403, "forbidden", "Only an owner can map provider claims to the owner role.", permission=None)
        held = set(authorizer.effective_permissions(actor_id, tenant_id))
        mapped = [(f"/role_mapping/map/{value}", role) for value, role in mapping.map.items()]
        if mapping.default_role is not None:
            mapped.append(("/role_mapping/default_role", mapping.default_role))
        for pointer, role in mapped:
            beyond = sorted(set(authorizer.role_permissions(role, tenant_id)) - held)
            if beyond:
                detail = (
                    f"The role {role!r} grants permissions you do not hold ({', '.join(beyond)}); a provider "
                    "you configure can give at most what you hold."
                )
                raise Problem(403, "role-above-your-own", detail, errors=[{"pointer": pointer, "detail": detail}])

    # -- sign-in ----------------------------------------------------------------------------------------

    async def enabled_provider(self, tenant: TenantInfo, name: str) -> OidcProvider:
        async with self.kernel.db.session(tenant.id) as session:
            provider = (
                await session.execute(select(OidcProvider).where(OidcProvider.name == name))
            ).scalar_one_or_none()
        if provider is None or not provider.enabled:
            raise Problem(404, "oidc-provider-not-found", f"There is no enabled sign-in provider {name!r} here.")
        return provider

    async def start(
        self, tenant: TenantInfo, name: str, *, browser_secret: str | None = None, next_path: str = "/"
    ) -> str:
        """Remember a new sign-in attempt and return the provider's authorization URL for it.

        ``browser_secret``: the value of the cookie a browser's callback must carry (see the module doc).
        """
        provider = await self.enabled_provider(tenant, name)
        discovery = await self._discover_for_sign_in(provider)
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        pending = PendingSignIn(
            tenant_id=str(tenant.id),
            provider=provider.name,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=self.redirect_uri(tenant, provider.name),
            browser_binding=digest(browser_secret) if browser_secret else None,
            next_path=next_path,
        )
        await self.redis.set(self._state_key(state), msgspec.json.encode(pending), ex=STATE_SECONDS)
        params = [
            ("response_type", "code"),
            ("client_id", provider.client_id),
            ("redirect_uri", pending.redirect_uri),
            ("scope", provider.scopes),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", create_s256_code_challenge(verifier)),
            ("code_challenge_method", "S256"),
        ]
        return str(add_params_to_uri(discovery.authorization_endpoint, params))

    async def take_state(
        self, tenant: TenantInfo, name: str, state: str | None, browser_secret: str | None
    ) -> PendingSignIn:
        """Spend the callback's ``state``: it must be known, unspent, for this tenant and provider, and
        for a sign-in a browser started, come back to that browser."""
        if not state:
            raise Problem(400, "invalid-state", "The sign-in answer carries no state; start the sign-in again.")
        raw = await self.redis.getdel(self._state_key(state))
        if raw is None:
            raise Problem(
                400, "invalid-state", "This sign-in is unknown, expired or already used; start the sign-in again."
            )
        pending = msgspec.json.decode(raw, type=PendingSignIn)
        if pending.tenant_id != str(tenant.id) or pending.provider != name:
            raise Problem(400, "invalid-state", "This sign-in was started for another tenant or provider.")
        if pending.browser_binding is not None and (
            browser_secret is None or digest(browser_secret) != pending.browser_binding
        ):
            raise Problem(400, "invalid-state", "This sign-in was started in another browser; start it again here.")
        return pending

    async def finish(
        self,
        tenant: TenantInfo,
        pending: PendingSignIn,
        *,
        code: str | None,
        error: str | None,
        client: ClientInfo,
        open_session: Opener[OpenedT],
    ) -> OpenedT | LinkConfirmationSent:
        """The callback after :meth:`take_state`: exchange the code, validate the ID token, then sign
        the user in with ``open_session``, or keep a pending link for a first sign-in."""
        if error:
            raise Problem(400, "oidc-denied", f"The provider did not sign you in ({error[:100]}).")
        if not code:
            raise Problem(400, "oidc-code-missing", "The sign-in answer carries no authorization code.")
        provider = await self.enabled_provider(tenant, pending.provider)
        discovery = await self._discover_for_sign_in(provider)
        try:
            claims = await self._exchange(provider, discovery, pending, code)
        except Problem as exc:
            await self._record_failure(tenant, provider, client, exc.code)
            raise
        return await self._sign_in(tenant, provider, claims, client, open_session)

    async def _discover_for_sign_in(self, provider: OidcProvider) -> Discovery:
        try:
            return await self.discover(provider.issuer)
        except Problem as exc:
            # The admin's 422 would blame the caller; for someone signing in the provider is at fault.
            raise Problem(
                502, "oidc-provider-unavailable", f"The sign-in provider cannot be used: {exc.detail}"
            ) from None

    def _state_key(self, state: str) -> str:
        return f"{self.prefix}:state:{hashlib.sha256(state.encode()).hexdigest()}"

    async def _exchange(
        self, provider: OidcProvider, discovery: Discovery, pending: PendingSignIn, code: str
    ) -> dict[str, Any]:
        try:
            secret = self.kernel.identity.box.decrypt(provider.client_secret)
        except ValueError:
            raise Problem(
                502,
                "oidc-provider-unavailable",
                "The provider's client secret cannot be read; an admin must set it again.",
            ) from None
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if "client_secret_basic" in discovery.token_endpoint_auth_methods_supported:
            # RFC 6749 section 2.3.1: both parts are form-encoded before Basic encoding.
            basic = f"{quote_plus(provider.client_id)}:{quote_plus(secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
        else:
            body = f"{body}&{urlencode([('client_id', provider.client_id), ('client_secret', secret)])}"
        try:
            async with outbound_client(self.settings, timeout=10.0) as http:
                response = await http.post(discovery.token_endpoint, content=body, headers=headers)
                tokens = response.json() if response.content else {}
                if response.status_code != 200 or not isinstance(tokens, dict):
                    reason = tokens.get("error", response.status_code) if isinstance(tokens, dict) else "bad answer"
                    raise Problem(400, "oidc-code-rejected", f"The provider refused the sign-in code ({reason}).")
                id_token = tokens.get("id_token")
                if not isinstance(id_token, str):
                    raise Problem(502, "invalid-id-token", "The provider sent no ID token.")
                jwks = await http.get(discovery.jwks_uri, headers={"Accept": "application/json"})
                claims = self._validate_id_token(id_token, jwks.json(), provider, discovery, pending)
                if (
                    "email" not in claims
                    and discovery.userinfo_endpoint
                    and isinstance(tokens.get("access_token"), str)
                ):
                    claims = await self._add_userinfo(http, discovery.userinfo_endpoint, tokens["access_token"], claims)
        except (httpx.HTTPError, UnsafeUrlError, ValueError) as exc:
            raise Problem(
                502, "oidc-provider-unavailable", f"The sign-in provider could not be reached: {type(exc).__name__}."
            ) from None
        return claims

    def _validate_id_token(
        self,
        id_token: str,
        jwks: Any,
        provider: OidcProvider,
        discovery: Discovery,
        pending: PendingSignIn,
    ) -> dict[str, Any]:
        try:
            keys = KeySet.import_key_set(jwks)
            token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY_SECONDS,
                iss={"essential": True, "value": discovery.issuer},
                aud={"essential": True, "value": provider.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": pending.nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise Problem(401, "invalid-id-token", f"The provider's ID token is not valid: {exc}.") from None
        claims = dict(token.claims)
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != provider.client_id:
            raise Problem(401, "invalid-id-token", "The ID token was issued to another party (azp).")
        return claims

    async def _add_userinfo(
        self, http: httpx.AsyncClient, endpoint: str, access_token: str, claims: dict[str, Any]
    ) -> dict[str, Any]:
        response = await http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        info = response.json() if response.status_code == 200 else {}
        # OIDC Core 5.3.2: userinfo of another subject must not be used.
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            return {**info, **claims}
        return claims

    async def _sign_in(
        self,
        tenant: TenantInfo,
        provider: OidcProvider,
        claims: dict[str, Any],
        client: ClientInfo,
        open_session: Opener[OpenedT],
    ) -> OpenedT | LinkConfirmationSent:
        accounts = self.kernel.identity.accounts
        authorizer = self.kernel.identity.authorizer
        issuer, subject = str(claims["iss"]), str(claims["sub"])
        member: Membership | None = None
        roles: set[str] = set()
        async with self.kernel.db.session(tenant.id) as session:
            link = (
                await session.execute(
                    select(UserIdentity).where(UserIdentity.issuer == issuer, UserIdentity.subject == subject)
                )
            ).scalar_one_or_none()
            user = await session.get(User, link.user_id) if link is not None else None
            if user is not None:
                member = (
                    await session.execute(select(Membership).where(Membership.user_id == user.id))
                ).scalar_one_or_none()
                roles = await self.existing_roles(session)
        if user is None:
            return await self._request_link(tenant, provider, claims, issuer, subject, client)
        cap = await self._cap(tenant, provider, client, user)
        if member is not None:
            role = authorizer.role_of(user.id, tenant.id) or member.role
            above = cap.beyond(role, authorizer.effective_permissions(user.id, tenant.id))
            if above:
                await self._record_failure(tenant, provider, client, ROLE_ABOVE_PROVIDER, user, above=above)
                raise Problem(
                    403,
                    ROLE_ABOVE_PROVIDER,
                    f"Your role here grants more than the sign-in provider {provider.name!r} may give, "
                    "so it cannot sign you in: sign in with your password.",
                )
        else:
            mapping = msgspec.convert(provider.role_mapping or {}, RoleMapping)
            mapped = choose_role(mapping, claims, roles)
            role = next(
                (r for r in (mapped, "member") if not cap.beyond(r, authorizer.role_permissions(r, tenant.id))), ""
            )
            if not role:
                await self._record_failure(tenant, provider, client, ROLE_ABOVE_PROVIDER, user, role=mapped)
                raise Problem(
                    403,
                    ROLE_ABOVE_PROVIDER,
                    f"The sign-in provider {provider.name!r} cannot give you a role here; ask an admin to invite you.",
                )
            async with self.kernel.db.session(tenant.id) as session:
                await accounts.add_member(session, tenant, user.id, role)
                await audit.record(
                    session,
                    tenant.id,
                    "member.joined",
                    actor_id=user.id,
                    actor_label=user.email,
                    ip=client.ip,
                    user_agent=client.user_agent,
                    role=role,
                    mapped_role=mapped,
                    method="oidc",
                    provider=provider.name,
                )
            # The new role must be in the enforcer before the access token (which names it) is issued.
            await authorizer.changed(tenant.id)
        async with self.kernel.db.session(tenant.id) as session:
            opened = await open_session(session, user, tenant, client)
            await audit.record(
                session,
                tenant.id,
                "auth.signin.succeeded",
                actor_id=user.id,
                actor_label=user.email,
                ip=client.ip,
                user_agent=client.user_agent,
                method="oidc",
                provider=provider.name,
            )
        return opened

    async def _cap(self, tenant: TenantInfo, provider: OidcProvider, client: ClientInfo, user: User) -> RoleCap:
        """The most a sign-in through ``provider`` may yield here: what its configurer holds now."""
        authorizer = self.kernel.identity.authorizer
        if provider.configured_by is None:
            return RoleCap(frozenset(authorizer.role_permissions("admin", tenant.id)), owner=False)
        configurer_role = authorizer.role_of(provider.configured_by, tenant.id)
        if configurer_role is None:
            await self._record_failure(tenant, provider, client, PROVIDER_ORPHANED, user)
            raise Problem(
                403,
                PROVIDER_ORPHANED,
                f"The sign-in provider {provider.name!r} was set up by someone who is no longer a member here, "
                "so it signs nobody in until an admin saves it again. Sign in with your password meanwhile.",
            )
        return RoleCap(
            frozenset(authorizer.effective_permissions(provider.configured_by, tenant.id)),
            owner=configurer_role == "owner",
        )

    async def _request_link(
        self,
        tenant: TenantInfo,
        provider: OidcProvider,
        claims: dict[str, Any],
        issuer: str,
        subject: str,
        client: ClientInfo,
    ) -> LinkConfirmationSent:
        """A first sign-in through this provider account: the address holder must confirm it."""
        raw_email = claims.get("email")
        if not isinstance(raw_email, str) or not raw_email.strip():
            raise Problem(
                422,
                "oidc-email-missing",
                "The provider did not share an e-mail address; its configuration needs the email scope.",
            )
        name = claims.get("name")
        return await IdentityLinks(self.kernel).request(
            tenant,
            provider,
            issuer=issuer,
            subject=subject,
            email=normalise_email(raw_email),
            # The provider's claim, not the user's typing: kept, as one line (see inopsio.names).
            name=to_one_line(name) if isinstance(name, str) else "",
            client=client,
        )

    async def _record_failure(
        self,
        tenant: TenantInfo,
        provider: OidcProvider,
        client: ClientInfo,
        reason: str,
        user: User | None = None,
        **details: Any,
    ) -> None:
        async with self.kernel.db.session(tenant.id) as session:
            await audit.record(
                session,
                tenant.id,
                "auth.signin.failed",
                actor_id=user.id if user is not None else None,
                actor_label=user.email if user is not None else "",
                ip=client.ip,
                user_agent=client.user_agent,
                outcome="failure",
                method="oidc",
                provider=provider.name,
                reason=reason,
                **details,
            )
