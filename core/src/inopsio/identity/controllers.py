"""Identity API: sign-up, sign-in, refresh, sign-out, ``/api/v1/me``, sessions, members and roles."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody
from sqlalchemy import select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT, require_user
from inopsio.identity.models import CustomRole, Membership, User
from inopsio.identity.rbac import BUILTIN_ROLES, ROLE_NAME_RE
from inopsio.identity.services import ClientInfo, TokenPair
from inopsio.identity.signup import SignupAccepted, confirm_signup, request_signup
from inopsio.tenancy.models import Tenant
from inopsio.tenancy.resolution import TENANCY_OPT
from inopsio.tenancy.schemas import Name, Slug, TenantInfo

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
RoleName = Annotated[str, msgspec.Meta(min_length=2, max_length=50)]


def client_of(request: Request[Any, Any, Any]) -> ClientInfo:
    address = request.client.host if request.client else ""
    return ClientInfo(ip=address, user_agent=request.headers.get("user-agent", "")[:300])


# -- schemas ---------------------------------------------------------------------------------------


class SignupIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    tenant_slug: Slug
    tenant_name: Name


class SignupConfirmIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SignupOut(msgspec.Struct, kw_only=True):
    """A workspace created by following a sign-up link, and its owner."""

    user_id: UUID
    email: str
    tenant: TenantInfo


class LoginIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    totp_code: Annotated[str, msgspec.Meta(max_length=12)] | None = None
    recovery_code: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class RefreshIn(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(max_length=200)]


class PasswordChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class MembershipOut(msgspec.Struct, kw_only=True):
    tenant_id: UUID
    slug: str
    name: str
    role: str


class MeOut(msgspec.Struct, kw_only=True):
    user_id: UUID
    email: str
    name: str
    email_verified: bool
    totp_enabled: bool
    tenant: MembershipOut
    role: str | None
    permissions: list[str]
    #: Every tenant this identity belongs to (for the tenant switcher).
    tenants: list[MembershipOut]


class SessionOut(msgspec.Struct, kw_only=True):
    id: UUID
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    ip: str
    user_agent: str
    current: bool


class MemberOut(msgspec.Struct, kw_only=True):
    user_id: UUID
    email: str
    name: str
    role: str
    joined_at: dt.datetime


class RoleChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    role: RoleName


class RoleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: RoleName
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    permissions: list[str] = msgspec.field(default_factory=list)


class RoleOut(msgspec.Struct, kw_only=True):
    name: str
    description: str
    builtin: bool
    permissions: list[str]


class PermissionOut(msgspec.Struct, kw_only=True):
    name: str
    description: str
    module: str
    default_roles: list[str]


# -- sign-up and sessions --------------------------------------------------------------------------


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/signup", status_code=202, opt={TENANCY_OPT: "none"})
    async def signup(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[SignupIn]
    ) -> SignupAccepted:
        """Ask for a workspace (its slug is its subdomain) and its owner account: a link to create
        them is mailed to the address. The answer is the same whether the address has an account.
        """
        return await request_signup(
            kernel,
            email=data.email,
            password=data.password,
            name=data.name,
            tenant_slug=data.tenant_slug,
            tenant_name=data.tenant_name,
            client=client_of(request),
        )

    @post("/signup/confirm", status_code=201, opt={TENANCY_OPT: "none"})
    async def confirm_signup(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[SignupConfirmIn]
    ) -> SignupOut:
        """Follow the mailed sign-up link: the workspace and its owner are created (once)."""
        user, tenant = await confirm_signup(kernel, data.token, client_of(request))
        return SignupOut(user_id=user.id, email=user.email, tenant=tenant)

    @post("/login", status_code=200, opt={PUBLIC_OPT: True})
    async def login(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[LoginIn]
    ) -> TokenPair:
        """Sign in to this tenant: an access token (short-lived) and a refresh token (single-use).

        With two-factor authentication on, also send ``totp_code`` (or a ``recovery_code``).
        """
        client = client_of(request)
        return await kernel.identity.accounts.login(
            tenant, data.email, data.password, client, second_factor=second_factor_of(kernel, tenant, data, client)
        )

    @post("/refresh", status_code=200, opt={PUBLIC_OPT: True})
    async def refresh(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[RefreshIn]
    ) -> TokenPair:
        """Spend a refresh token for a new pair. Reusing a spent one ends its session."""
        return await kernel.identity.accounts.refresh(tenant, data.refresh_token, client_of(request))

    @post("/logout", status_code=204)
    async def logout(self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant) -> None:
        principal, user_id = require_user(request)
        assert principal.session_id is not None
        await kernel.identity.accounts.revoke_sessions(tenant.id, [principal.session_id], "signed out")
        async with kernel.db.session(tenant.id) as session:
            await audit.record(session, tenant.id, "auth.signout", actor_id=user_id, **_client_fields(request))


def second_factor_of(kernel: KernelDep, tenant: TenantInfo, data: LoginIn, client: ClientInfo) -> Any:
    """The second-factor check of a sign-in (API or web), run by ``AccountService.sign_in``."""
    return kernel.identity.totp.second_factor(
        tenant, data.email, client, totp_code=data.totp_code, recovery_code=data.recovery_code
    )


def _client_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    client = client_of(request)
    return {"ip": client.ip, "user_agent": client.user_agent}


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["me"]

    @get("/")
    async def me(self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant) -> MeOut:
        """The signed-in user, this tenant, their role and effective permissions, and their other tenants."""
        _, user_id = require_user(request)
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id, user_id=user_id) as session:
            user = await session.get(User, user_id)
            rows = (
                await session.execute(
                    select(Membership, Tenant)
                    .join(Tenant, Tenant.id == Membership.tenant_id)
                    .where(Membership.user_id == user_id, Tenant.status == "active")
                    .execution_options(include_all_tenants=True)
                    .order_by(Tenant.slug)
                )
            ).all()
        if user is None:
            raise Problem(401, "invalid-token", "Unknown user.")
        tenants = [
            MembershipOut(tenant_id=t.id, slug=t.slug, name=t.name, role=authorizer.role_of(user_id, t.id) or m.role)
            for m, t in rows
        ]
        role = authorizer.role_of(user_id, tenant.id)
        return MeOut(
            user_id=user.id,
            email=user.email,
            name=user.name,
            email_verified=user.email_verified_at is not None,
            totp_enabled=user.totp_enabled_at is not None,
            tenant=MembershipOut(tenant_id=tenant.id, slug=tenant.slug, name=tenant.name, role=role or ""),
            role=role,
            permissions=authorizer.effective_permissions(user_id, tenant.id),
            tenants=tenants,
        )

    @get("/sessions")
    async def sessions(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant
    ) -> list[SessionOut]:
        principal, user_id = require_user(request)
        rows = await kernel.identity.accounts.sessions_of(user_id, tenant.id)
        return [
            SessionOut(
                id=s.id,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                ip=s.ip,
                user_agent=s.user_agent,
                current=s.id == principal.session_id,
            )
            for s in rows
        ]

    @delete("/sessions/{session_id:uuid}", status_code=204)
    async def revoke_session(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, session_id: FromPath[UUID]
    ) -> None:
        _, user_id = require_user(request)
        ended = await kernel.identity.accounts.revoke_sessions(
            tenant.id, [session_id], "revoked by user", user_id=user_id
        )
        if not ended:
            raise Problem(404, "not-found", "No such session.")
        async with kernel.db.session(tenant.id) as session:
            await audit.record(
                session,
                tenant.id,
                "auth.session.revoked",
                actor_id=user_id,
                session_id=str(session_id),
                **_client_fields(request),
            )

    @post("/password", status_code=204)
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        data: JSONBody[PasswordChangeIn],
    ) -> None:
        """Change your password; every other session of yours ends."""
        principal, user_id = require_user(request)
        await kernel.identity.accounts.change_password(
            tenant, user_id, data.current_password, data.new_password, principal.session_id, client_of(request)
        )


# -- members and roles ----------------------------------------------------------------------------


class MembersController(Controller):
    path = "/api/v1/members"
    tags = ["members"]

    @get("/", opt={PERMISSION_OPT: "kernel.members.read"})
    async def list_members(self, kernel: KernelDep, tenant: CurrentTenant) -> list[MemberOut]:
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id) as session:
            rows = (
                await session.execute(
                    select(Membership, User).join(User, User.id == Membership.user_id).order_by(User.email)
                )
            ).all()
        return [
            MemberOut(
                user_id=u.id,
                email=u.email,
                name=u.name,
                role=authorizer.role_of(u.id, tenant.id) or m.role,
                joined_at=m.created_at,
            )
            for m, u in rows
        ]

    @patch("/{user_id:uuid}", opt={PERMISSION_OPT: "kernel.members.write"})
    async def change_role(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        user_id: FromPath[UUID],
        data: JSONBody[RoleChangeIn],
    ) -> MemberOut:
        """Give a member another role (built-in or custom). Only owners make or unmake owners."""
        _, actor_id = require_user(request)
        authorizer = kernel.identity.authorizer
        await _check_role_exists(kernel, tenant, data.role)
        actor_role = authorizer.role_of(actor_id, tenant.id)
        async with kernel.db.session(tenant.id) as session:
            row = (
                await session.execute(
                    select(Membership, User)
                    .join(User, User.id == Membership.user_id)
                    .where(Membership.user_id == user_id)
                )
            ).one_or_none()
            if row is None:
                raise Problem(404, "not-found", "No such member.")
            membership, user = row
            current = authorizer.role_of(user_id, tenant.id) or membership.role
            if "owner" in (current, data.role) and actor_role != "owner":
                raise Problem(403, "forbidden", "Only an owner can make or unmake owners.", permission=None)
            if current == "owner" and data.role != "owner":
                await _keep_an_owner(session, kernel, tenant, user_id)
            membership.role = data.role
            await authorizer.assign_role(session, user_id, tenant.id, data.role)
            await audit.record(
                session,
                tenant.id,
                "member.role_changed",
                actor_id=actor_id,
                member=str(user_id),
                email=user.email,
                old_role=current,
                new_role=data.role,
                **_client_fields(request),
            )
        await authorizer.changed(tenant.id)
        return MemberOut(
            user_id=user.id, email=user.email, name=user.name, role=data.role, joined_at=membership.created_at
        )

    @delete("/{user_id:uuid}", status_code=204, opt={PERMISSION_OPT: "kernel.members.write"})
    async def remove_member(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, user_id: FromPath[UUID]
    ) -> None:
        _, actor_id = require_user(request)
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id) as session:
            membership = (
                await session.execute(select(Membership).where(Membership.user_id == user_id))
            ).scalar_one_or_none()
            if membership is None:
                raise Problem(404, "not-found", "No such member.")
            if (authorizer.role_of(user_id, tenant.id) or membership.role) == "owner":
                if authorizer.role_of(actor_id, tenant.id) != "owner":
                    raise Problem(403, "forbidden", "Only an owner can remove an owner.", permission=None)
                await _keep_an_owner(session, kernel, tenant, user_id)
            await session.delete(membership)
            await kernel.quotas.change_gauge(session, tenant, "users", -1)
            await authorizer.remove_user(session, user_id, tenant.id)
            await audit.record(
                session, tenant.id, "member.removed", actor_id=actor_id, member=str(user_id), **_client_fields(request)
            )
        await authorizer.changed(tenant.id)
        await kernel.identity.accounts.revoke_sessions(tenant.id, None, "membership ended", user_id=user_id)

    @post("/{user_id:uuid}/revoke-sessions", status_code=200, opt={PERMISSION_OPT: "kernel.members.write"})
    async def revoke_member_sessions(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, user_id: FromPath[UUID]
    ) -> dict[str, int]:
        """End every session a member has in this tenant. Anyone else is 404, as on the other member
        routes: a 200 for a user of another tenant would confirm that the id exists."""
        _, actor_id = require_user(request)
        accounts = kernel.identity.accounts
        if not await accounts.is_member(tenant.id, user_id):
            raise Problem(404, "not-found", "No such member.")
        ended = await accounts.revoke_sessions(tenant.id, None, "revoked by admin", user_id=user_id)
        async with kernel.db.session(tenant.id) as session:
            await audit.record(
                session,
                tenant.id,
                "auth.session.revoked",
                actor_id=actor_id,
                member=str(user_id),
                count=len(ended),
                **_client_fields(request),
            )
        return {"revoked": len(ended)}


async def _keep_an_owner(session: Any, kernel: Any, tenant: TenantInfo, leaving: UUID) -> None:
    owners = [
        m.user_id
        for m in (await session.execute(select(Membership))).scalars()
        if kernel.identity.authorizer.role_of(m.user_id, tenant.id) == "owner" and m.user_id != leaving
    ]
    if not owners:
        raise Problem(409, "last-owner", "A tenant keeps at least one owner; make someone else owner first.")


async def _check_role_exists(kernel: Any, tenant: TenantInfo, role: str) -> None:
    if role in BUILTIN_ROLES:
        return
    async with kernel.db.session(tenant.id) as session:
        found = (await session.execute(select(CustomRole).where(CustomRole.name == role))).scalar_one_or_none()
    if found is None:
        raise Problem(
            422,
            "unknown-role",
            f"There is no role {role!r} in this tenant.",
            errors=[{"pointer": "/role", "detail": "unknown role"}],
        )


class RolesController(Controller):
    path = "/api/v1/roles"
    tags = ["roles"]

    @get("/", opt={PERMISSION_OPT: "kernel.roles.read"})
    async def list_roles(self, kernel: KernelDep, tenant: CurrentTenant) -> list[RoleOut]:
        authorizer = kernel.identity.authorizer
        roles = [
            RoleOut(
                name=r,
                description=f"built-in {r}",
                builtin=True,
                permissions=sorted(authorizer.permissions)
                if r == "owner"
                else authorizer.role_permissions(r, tenant.id),
            )
            for r in BUILTIN_ROLES
        ]
        async with kernel.db.session(tenant.id) as session:
            custom = (await session.execute(select(CustomRole).order_by(CustomRole.name))).scalars().all()
        roles += [
            RoleOut(
                name=c.name,
                description=c.description,
                builtin=False,
                permissions=authorizer.role_permissions(c.name, tenant.id),
            )
            for c in custom
        ]
        return roles

    @post("/", status_code=201, opt={PERMISSION_OPT: "kernel.roles.write"})
    async def create_role(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[RoleIn]
    ) -> RoleOut:
        """Create a custom role granting some of the declared permissions."""
        _, actor_id = require_user(request)
        if data.name in BUILTIN_ROLES or not ROLE_NAME_RE.match(data.name):
            raise Problem(
                422,
                "invalid-role-name",
                "Use 2-50 lower-case letters, digits, - or _, starting with a letter, and no built-in name.",
                errors=[{"pointer": "/name", "detail": "invalid"}],
            )
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id) as session:
            exists = (
                await session.execute(select(CustomRole).where(CustomRole.name == data.name))
            ).scalar_one_or_none()
            if exists is not None:
                raise Problem(409, "role-exists", f"A role {data.name!r} already exists.")
            session.add(CustomRole(name=data.name, description=data.description))
            try:
                await authorizer.set_role_permissions(session, tenant.id, data.name, data.permissions)
            except ValueError as exc:
                raise Problem(
                    422, "unknown-permission", str(exc), errors=[{"pointer": "/permissions", "detail": str(exc)}]
                ) from None
            await audit.record(
                session,
                tenant.id,
                "role.created",
                actor_id=actor_id,
                role=data.name,
                permissions=sorted(set(data.permissions)),
                **_client_fields(request),
            )
        await authorizer.changed(tenant.id)
        return RoleOut(
            name=data.name,
            description=data.description,
            builtin=False,
            permissions=authorizer.role_permissions(data.name, tenant.id),
        )

    @put("/{name:str}", opt={PERMISSION_OPT: "kernel.roles.write"})
    async def update_role(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        tenant: CurrentTenant,
        name: FromPath[str],
        data: JSONBody[RoleIn],
    ) -> RoleOut:
        _, actor_id = require_user(request)
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id) as session:
            role = (await session.execute(select(CustomRole).where(CustomRole.name == name))).scalar_one_or_none()
            if role is None:
                raise Problem(404, "not-found", "No such custom role (built-in roles cannot be changed).")
            if data.name != name:
                raise Problem(422, "rename-not-supported", "A role keeps its name; create a new role instead.")
            role.description = data.description
            try:
                await authorizer.set_role_permissions(session, tenant.id, name, data.permissions)
            except ValueError as exc:
                raise Problem(422, "unknown-permission", str(exc)) from None
            await audit.record(
                session,
                tenant.id,
                "role.changed",
                actor_id=actor_id,
                role=name,
                permissions=sorted(set(data.permissions)),
                **_client_fields(request),
            )
        await authorizer.changed(tenant.id)
        return RoleOut(
            name=name,
            description=data.description,
            builtin=False,
            permissions=authorizer.role_permissions(name, tenant.id),
        )

    @delete("/{name:str}", status_code=204, opt={PERMISSION_OPT: "kernel.roles.write"})
    async def delete_role(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, name: FromPath[str]
    ) -> None:
        _, actor_id = require_user(request)
        authorizer = kernel.identity.authorizer
        async with kernel.db.session(tenant.id) as session:
            role = (await session.execute(select(CustomRole).where(CustomRole.name == name))).scalar_one_or_none()
            if role is None:
                raise Problem(404, "not-found", "No such custom role.")
            holders = [
                m
                for m in (await session.execute(select(Membership))).scalars()
                if authorizer.role_of(m.user_id, tenant.id) == name
            ]
            if holders:
                raise Problem(
                    409, "role-in-use", f"{len(holders)} member(s) still have this role; change theirs first."
                )
            await session.delete(role)
            await authorizer.delete_role(session, tenant.id, name)
            await audit.record(
                session, tenant.id, "role.deleted", actor_id=actor_id, role=name, **_client_fields(request)
            )
        await authorizer.changed(tenant.id)


@get("/api/v1/permissions", tags=["roles"], opt={PERMISSION_OPT: "kernel.roles.read"})
async def list_permissions(kernel: KernelDep) -> list[PermissionOut]:
    """Every permission the installed plugins declare, for the custom role editor."""
    return [
        PermissionOut(
            name=p.name, description=p.description, module=p.name.split(".", 1)[0], default_roles=["owner", *p.roles]
        )
        for p in sorted(kernel.identity.authorizer.permissions.values(), key=lambda p: p.name)
    ]
