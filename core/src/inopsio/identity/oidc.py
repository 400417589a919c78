"""OIDC sign-in per tenant: provider configuration, the authorization-code flow with PKCE, and linking.

A sign-in starts by storing its state, nonce and PKCE verifier in Redis under the random ``state``
(bound to the tenant and provider, ten minutes, single use) and sending the browser to the
provider. The callback spends the state, exchanges the code, validates the ID token (signature
against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``), then finds the user by
(issuer, subject), links an existing account by a verified e-mail, or creates one, and opens a
session like a password sign-in does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import TYPE_CHECKING, Any
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

from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.models import CustomRole, Membership, OidcProvider, User, UserIdentity
from inopsio.identity.rbac import BUILTIN_ROLES
from inopsio.identity.services import ClientInfo, TokenPair, normalise_email
from inopsio.net import UnsafeUrlError, outbound_client

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

log = logging.getLogger("inopsio.identity.oidc")

STATE_SECONDS = 600
DISCOVERY_CACHE_SECONDS = 300
#: Signature algorithms accepted on ID tokens (never ``none`` nor HMAC with the client secret).
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
CLOCK_LEEWAY_SECONDS = 60


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


class PendingSignIn(msgspec.Struct, kw_only=True):
    """What the callback needs, kept in Redis between start and callback."""

    tenant_id: str
    provider: str
    nonce: str
    code_verifier: str
    redirect_uri: str


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
        base = self.settings.public_url.replace("{tenant}", tenant.slug).rstrip("/")
        return f"{base}/api/v1/auth/oidc/{quote(name, safe='')}/callback"

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

    async def check_role_mapping(self, session: AsyncSession, mapping: RoleMapping, actor_role: str | None) -> None:
        """Every mapped role must exist; ``owner`` is never a default, and only owners may map to it."""
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
        if "owner" in mapping.map.values() and actor_role != "owner":
            raise Problem(403, "forbidden", "Only an owner can map provider claims to the owner role.", permission=None)

    # -- sign-in ----------------------------------------------------------------------------------------

    async def enabled_provider(self, tenant: TenantInfo, name: str) -> OidcProvider:
        async with self.kernel.db.session(tenant.id) as session:
            provider = (
                await session.execute(select(OidcProvider).where(OidcProvider.name == name))
            ).scalar_one_or_none()
        if provider is None or not provider.enabled:
            raise Problem(404, "oidc-provider-not-found", f"There is no enabled sign-in provider {name!r} here.")
        return provider

    async def start(self, tenant: TenantInfo, name: str) -> str:
        """Remember a new sign-in attempt and return the provider's authorization URL for it."""
        provider = await self.enabled_provider(tenant, name)
        discovery = await self._discover_for_sign_in(provider)
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        pending = PendingSignIn(
            tenant_id=str(tenant.id),
            provider=provider.name,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=self.redirect_uri(tenant, provider.name),
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

    async def finish(
        self,
        tenant: TenantInfo,
        name: str,
        *,
        code: str | None,
        state: str | None,
        error: str | None,
        client: ClientInfo,
    ) -> TokenPair:
        """The callback: spend the state, exchange the code, validate the ID token, sign the user in."""
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
        if error:
            raise Problem(400, "oidc-denied", f"The provider did not sign you in ({error[:100]}).")
        if not code:
            raise Problem(400, "oidc-code-missing", "The sign-in answer carries no authorization code.")
        provider = await self.enabled_provider(tenant, name)
        discovery = await self._discover_for_sign_in(provider)
        try:
            claims = await self._exchange(provider, discovery, pending, code)
        except Problem as exc:
            await self._record_failure(tenant, provider, client, exc.code)
            raise
        return await self._sign_in(tenant, provider, claims, client)

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
        self, tenant: TenantInfo, provider: OidcProvider, claims: dict[str, Any], client: ClientInfo
    ) -> TokenPair:
        accounts = self.kernel.identity.accounts
        issuer, subject = str(claims["iss"]), str(claims["sub"])
        joined = False
        async with self.kernel.db.session(tenant.id) as session:
            link = (
                await session.execute(
                    select(UserIdentity).where(UserIdentity.issuer == issuer, UserIdentity.subject == subject)
                )
            ).scalar_one_or_none()
            user = await session.get(User, link.user_id) if link is not None else None
            if user is None:
                user = await self._link_or_create(session, tenant, claims)
                session.add(UserIdentity(user_id=user.id, issuer=issuer, subject=subject))
            member = (
                await session.execute(select(Membership).where(Membership.user_id == user.id))
            ).scalar_one_or_none()
            if member is None:
                mapping = msgspec.convert(provider.role_mapping or {}, RoleMapping)
                role = choose_role(mapping, claims, await self.existing_roles(session))
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
                    method="oidc",
                    provider=provider.name,
                )
                joined = True
        if joined:
            # The new role must be in the enforcer before the access token (which names it) is issued.
            await self.kernel.identity.authorizer.changed(tenant.id)
        async with self.kernel.db.session(tenant.id) as session:
            pair = await accounts._open_session(session, user, tenant, client)
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
        return pair

    async def _link_or_create(self, session: AsyncSession, tenant: TenantInfo, claims: dict[str, Any]) -> User:
        """The account for a first sign-in through this provider account (see the module doc)."""
        raw_email = claims.get("email")
        if not isinstance(raw_email, str) or not raw_email.strip():
            raise Problem(
                422,
                "oidc-email-missing",
                "The provider did not share an e-mail address; its configuration needs the email scope.",
            )
        email = normalise_email(raw_email)
        verified = claims.get("email_verified") in (True, "true")
        user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
        if user is None:
            name = claims.get("name")
            user = User(
                email=email,
                name=name[:200] if isinstance(name, str) else "",
                password_hash=None,
                email_verified_at=utcnow() if verified else None,
            )
            session.add(user)
            await session.flush()
            return user
        if not verified:
            raise Problem(
                409,
                "oidc-email-unverified",
                "An account with this e-mail exists, and the provider has not verified the address, "
                "so the two cannot be linked.",
            )
        # A tenant admin controls their provider, and so what it claims; linking an account that
        # belongs to other tenants only would let that admin act under someone else's identity.
        is_member = (
            await session.execute(select(Membership.user_id).where(Membership.user_id == user.id))
        ).scalar_one_or_none()
        if is_member is None:
            raise Problem(
                409,
                "account-exists",
                "An account with this e-mail exists but is not a member here; ask an admin to invite it, "
                "then sign in through the provider.",
            )
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
        return user

    async def _record_failure(
        self, tenant: TenantInfo, provider: OidcProvider, client: ClientInfo, reason: str
    ) -> None:
        async with self.kernel.db.session(tenant.id) as session:
            await audit.record(
                session,
                tenant.id,
                "auth.signin.failed",
                ip=client.ip,
                user_agent=client.user_agent,
                outcome="failure",
                method="oidc",
                provider=provider.name,
                reason=reason,
            )
