"""Role-based access control with Casbin (RBAC with domains; the tenant id is the domain).

Permissions are named ``<plugin>.<resource>.<action>`` and declared by plugins through
``register_permissions``; each names the built-in roles it is granted to by default. Built-in
role grants live in code (domain ``*``), recomputed from the hooks at start-up; custom roles and
role assignments live in the ``rbac_rules`` table, written in the same transaction as the change
that causes them, and every process reloads the tenant's lines when Redis announces a change
(within milliseconds; a periodic full reload catches anything missed while Redis was away).

We load and write ``rbac_rules`` ourselves rather than through a Casbin adapter so a role change
commits atomically with the membership it belongs to, and a change reloads one tenant, not all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from uuid import UUID

import casbin
import msgspec
from sqlalchemy import delete, insert, or_, select

from inopsio.identity.models import RbacRule
from inopsio.pubsub import follow_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.db.engine import Database
    from inopsio.identity.principal import Principal

log = logging.getLogger("inopsio.rbac")

BUILTIN_ROLES = ("owner", "admin", "manager", "member", "viewer")
ALL_DOMAINS = "*"
PERMISSION_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,49}$")

MODEL_TEXT = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && (p.dom == r.dom || p.dom == "*") && (p.obj == r.obj || p.obj == "*") \
&& (p.act == r.act || p.act == "*")
"""


class Permission(msgspec.Struct, frozen=True, kw_only=True):
    """One permission a plugin declares: ``crm.leads.read``, granted by default to ``roles``."""

    name: str
    description: str
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not PERMISSION_RE.match(self.name):
            raise ValueError(f"permission {self.name!r} must be named <plugin>.<resource>.<action>")
        unknown = set(self.roles) - set(BUILTIN_ROLES)
        if unknown:
            raise ValueError(f"permission {self.name!r} names unknown roles {sorted(unknown)}")

    @property
    def obj(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def act(self) -> str:
        return self.name.rsplit(".", 1)[1]


def user_subject(user_id: UUID | str) -> str:
    return f"user:{user_id}"


def role_subject(role: str) -> str:
    return f"role:{role}"


#: How many (user, tenant, question) answers a process keeps before starting afresh.
ANSWERS_KEPT = 100_000


class Authorizer:
    """The Casbin enforcer of one process, kept in step with the database and other processes."""

    def __init__(self, db: Database, redis: Redis, permissions: Iterable[Permission], namespace: str) -> None:
        self.db = db
        self.redis = redis
        self.permissions: dict[str, Permission] = {p.name: p for p in permissions}
        self.channel = f"{namespace}:rbac:changed"
        model = casbin.Model()
        model.load_model_from_text(MODEL_TEXT)
        self.enforcer = casbin.Enforcer(model)
        #: Answers of allowed() and role_of() until the policy changes.
        self._answers: dict[tuple[UUID, UUID, str | None], bool | str | None] = {}
        self._add_builtin_policies()

    def _add_builtin_policies(self) -> None:
        self.enforcer.add_policy(role_subject("owner"), ALL_DOMAINS, "*", "*")
        for permission in self.permissions.values():
            for role in permission.roles:
                if role != "owner":
                    self.enforcer.add_policy(role_subject(role), ALL_DOMAINS, permission.obj, permission.act)

    # -- checking --------------------------------------------------------------------------------

    def allowed(self, user_id: UUID, tenant_id: UUID, permission: str) -> bool:
        # Casbin evaluates its matcher expression on every call; a member asks the same few
        # questions on every request. Answers are kept until the policy changes (_forget_answers).
        key = (user_id, tenant_id, permission)
        known = self._answers.get(key)
        if isinstance(known, bool):
            return known
        obj, _, act = permission.rpartition(".")
        answer = bool(self.enforcer.enforce(user_subject(user_id), str(tenant_id), obj, act))
        self._remember(key, answer)
        return answer

    def allows(self, principal: Principal, tenant_id: UUID, permission: str) -> bool:
        """Whether a request's principal may use ``permission`` in ``tenant_id`` now.

        A user: what their role grants. An API key: the permissions listed on the key *and* held by
        its creator at this moment, so a demoted creator's keys lose what the creator lost and a
        removed creator's keys can do nothing. Both answers come from the same cache, dropped on
        every RBAC change in any process, so a role change reaches keys as fast as sessions.
        """
        user_id = principal.user_id
        if user_id is None:  # a key whose creator's account was deleted
            return False
        if principal.permissions is not None and permission not in principal.permissions:
            return False
        return self.allowed(user_id, tenant_id, permission)

    def role_of(self, user_id: UUID, tenant_id: UUID) -> str | None:
        key = (user_id, tenant_id, None)
        if key in self._answers:
            known = self._answers[key]
            return known if isinstance(known, str) else None
        roles = self.enforcer.get_roles_for_user_in_domain(user_subject(user_id), str(tenant_id))
        role = roles[0].removeprefix("role:") if roles else None
        self._remember(key, role)
        return role

    def _remember(self, key: tuple[UUID, UUID, str | None], answer: bool | str | None) -> None:
        if len(self._answers) >= ANSWERS_KEPT:
            self._answers.clear()
        self._answers[key] = answer

    def _forget_answers(self) -> None:
        """Called after every change of the enforcer's policy (loads and per-tenant reloads)."""
        self._answers.clear()

    def effective_permissions(self, user_id: UUID, tenant_id: UUID) -> list[str]:
        return sorted(name for name in self.permissions if self.allowed(user_id, tenant_id, name))

    def role_permissions(self, role: str, tenant_id: UUID) -> list[str]:
        """The permissions a role (built-in or custom) grants in a tenant."""
        subject = role_subject(role)
        granted = []
        for name, permission in self.permissions.items():
            for sub, dom, obj, act in self.enforcer.get_policy():
                if (
                    sub == subject
                    and dom in (ALL_DOMAINS, str(tenant_id))
                    and obj in ("*", permission.obj)
                    and act in ("*", permission.act)
                ):
                    granted.append(name)
                    break
        return sorted(granted)

    # -- changing (inside the caller's transaction) ------------------------------------------------

    async def assign_role(self, session: AsyncSession, user_id: UUID, tenant_id: UUID, role: str) -> None:
        await session.execute(
            delete(RbacRule).where(
                RbacRule.ptype == "g", RbacRule.v0 == user_subject(user_id), RbacRule.v2 == str(tenant_id)
            )
        )
        await session.execute(
            insert(RbacRule).values(ptype="g", v0=user_subject(user_id), v1=role_subject(role), v2=str(tenant_id))
        )

    async def remove_user(self, session: AsyncSession, user_id: UUID, tenant_id: UUID) -> None:
        await session.execute(
            delete(RbacRule).where(
                RbacRule.ptype == "g", RbacRule.v0 == user_subject(user_id), RbacRule.v2 == str(tenant_id)
            )
        )

    async def set_role_permissions(
        self, session: AsyncSession, tenant_id: UUID, role: str, permissions: Iterable[str]
    ) -> None:
        """Replace what a custom role grants in one tenant."""
        unknown = sorted(set(permissions) - set(self.permissions))
        if unknown:
            raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
        await session.execute(
            delete(RbacRule).where(
                RbacRule.ptype == "p", RbacRule.v0 == role_subject(role), RbacRule.v1 == str(tenant_id)
            )
        )
        rows = [
            {"ptype": "p", "v0": role_subject(role), "v1": str(tenant_id), "v2": p.obj, "v3": p.act}
            for p in (self.permissions[name] for name in sorted(set(permissions)))
        ]
        if rows:
            await session.execute(insert(RbacRule), rows)

    async def delete_role(self, session: AsyncSession, tenant_id: UUID, role: str) -> None:
        await session.execute(
            delete(RbacRule).where(
                RbacRule.ptype == "p", RbacRule.v0 == role_subject(role), RbacRule.v1 == str(tenant_id)
            )
        )

    async def changed(self, tenant_id: UUID) -> None:
        """After the transaction commits: reload here, and tell every other process to reload."""
        await self.reload_tenant(tenant_id)
        try:
            await self.redis.publish(self.channel, str(tenant_id))
        except Exception:
            log.warning("could not announce an RBAC change; other processes catch up on their next full reload")

    # -- loading ---------------------------------------------------------------------------------------

    async def load_all(self) -> None:
        async with self.db.session(None) as session:
            rows = (await session.execute(select(RbacRule))).scalars().all()
        model = casbin.Model()
        model.load_model_from_text(MODEL_TEXT)
        enforcer = casbin.Enforcer(model)
        self.enforcer, previous = enforcer, self.enforcer
        try:
            self._add_builtin_policies()
            self._apply(rows)
        except Exception:
            self.enforcer = previous
            raise
        finally:
            self._forget_answers()

    async def reload_tenant(self, tenant_id: UUID) -> None:
        domain = str(tenant_id)
        async with self.db.session(None) as session:
            rows = (
                (
                    await session.execute(
                        select(RbacRule).where(
                            or_(
                                (RbacRule.ptype == "p") & (RbacRule.v1 == domain),
                                (RbacRule.ptype == "g") & (RbacRule.v2 == domain),
                            )
                        )
                    )
                )
                .scalars()
                .all()
            )
        try:
            self.enforcer.remove_filtered_policy(1, domain)
            self.enforcer.remove_filtered_grouping_policy(2, domain)
            self._apply(rows)
        finally:
            self._forget_answers()

    def _apply(self, rows: Iterable[RbacRule]) -> None:
        policies = [[r.v0, r.v1, r.v2, r.v3] for r in rows if r.ptype == "p"]
        groupings = [[r.v0, r.v1, r.v2] for r in rows if r.ptype == "g"]
        if policies:
            self.enforcer.add_policies(policies)
        if groupings:
            self.enforcer.add_grouping_policies(groupings)

    async def follow_changes(self, full_reload_seconds: float = 300.0) -> None:
        """Apply other processes' changes as they are announced; reload everything now and then."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + full_reload_seconds

        async def reload_if_due() -> None:
            nonlocal next_full
            if loop.time() >= next_full:
                await self.load_all()
                next_full = loop.time() + full_reload_seconds

        await follow_channel(
            self.redis,
            self.channel,
            lambda tenant: self.reload_tenant(UUID(tenant)),
            # Anything may have changed while we were not listening.
            on_subscribed=self.load_all,
            on_idle=reload_if_due,
            what="RBAC change",
        )
