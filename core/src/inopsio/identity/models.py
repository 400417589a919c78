"""Identity tables: users (one identity, many tenants), memberships, sessions, tokens, API keys,
custom roles, OIDC providers and the audit log.

Users, sessions and single-use tokens belong to a person, not a tenant, so they are kernel tables;
everything a tenant administers (memberships, invitations, API keys, roles, OIDC, audit) is
tenant-owned behind row-level security.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import (
    APP_PRIVILEGES,
    Base,
    TenantOwned,
    TenantScoped,
    Timestamped,
    new_id,
    tenant_table_args,
    utcnow,
)


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = ({"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    #: Lower-cased at the edge; one identity per address.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    #: argon2id; empty for accounts that only sign in through OIDC.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[dt.datetime | None]
    email_verified_at: Mapped[dt.datetime | None]
    #: TOTP secret, encrypted with the installation's secret key.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[dt.datetime | None]
    #: Last accepted TOTP time step: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    is_platform_operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class RecoveryCode(Base):
    __tablename__ = "user_recovery_codes"
    __table_args__ = ({"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE, DELETE"}},)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None]


class Membership(TenantScoped, Base):
    """A user's role in one tenant. Users may read their own memberships in every tenant."""

    __tablename__ = "memberships"
    __table_args__ = tenant_table_args(Index("ix_memberships_user_id", "user_id"))

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthSession(Base):
    """A sign-in: the family of refresh tokens issued from it. Revoking it ends them all."""

    __tablename__ = "auth_sessions"
    __table_args__ = (
        Index("ix_auth_sessions_user_id", "user_id"),
        Index("ix_auth_sessions_tenant_id", "tenant_id"),
        {"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(100))
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    #: Web sessions: SHA-256 of the session cookie's secret (the cookie itself is never stored).
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = ({"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    session_id: Mapped[UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None]


class UserToken(Base):
    """Single-use, expiring tokens mailed to a user: email verification and password reset."""

    __tablename__ = "user_tokens"
    __table_args__ = ({"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class UserIdentity(Base):
    """A link between a user and an account at an OIDC provider (issuer + subject)."""

    __tablename__ = "user_identities"
    __table_args__ = (
        UniqueConstraint("issuer", "subject"),
        # DELETE: a user unlinks a provider account (``DELETE /api/v1/me/identities/{id}``).
        {"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE, DELETE"}},
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Invitation(TenantOwned, Base):
    __tablename__ = "invitations"
    __table_args__ = tenant_table_args(UniqueConstraint("token_hash"))

    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    invited_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    accepted_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[dt.datetime | None]


class ApiKey(TenantOwned, Base):
    """A key for integrations: named, limited to some permissions, stored as a digest."""

    __tablename__ = "api_keys"
    __table_args__ = tenant_table_args(UniqueConstraint("prefix"))

    name: Mapped[str] = mapped_column(String(200))
    #: The public part of the key, used to find it (``iok_<prefix>_<secret>``).
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[list[str]] = mapped_column(default=list)
    created_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    @classmethod
    def __inopsio_sample__(cls) -> dict[str, Any]:
        return {"prefix": new_id().hex[:16], "permissions": []}


class CustomRole(TenantOwned, Base):
    __tablename__ = "custom_roles"
    __table_args__ = tenant_table_args(UniqueConstraint("tenant_id", "name"))

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OidcProvider(TenantOwned, Timestamped, Base):
    __tablename__ = "oidc_providers"

    name: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    #: Encrypted with the installation's secret key.
    client_secret: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(300), default="openid email profile")
    #: {"claim": "groups", "map": {"sales-managers": "manager"}, "default_role": "member"}
    role_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The admin who last saved it: sign-ins through it never yield more than this user holds now
    #: (``None``: saved before the rule, capped at the built-in admin role).
    configured_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuditEntry(TenantOwned, Base):
    """An append-only record of a security-relevant action. The app role may insert and read only."""

    __tablename__ = "audit_log"
    __table_args__ = tenant_table_args(
        Index("ix_audit_log_tenant_time", "tenant_id", "occurred_at"),
        **{APP_PRIVILEGES: "SELECT, INSERT"},
    )

    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(100))
    actor_id: Mapped[UUID | None]
    actor_label: Mapped[str] = mapped_column(String(320), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RbacRule(Base):
    """Casbin policy lines (RBAC with domains; the tenant id is the domain, ``*`` for built-ins)."""

    __tablename__ = "rbac_rules"
    __table_args__ = (Index("ix_rbac_rules_v1", "v1"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(8))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    def __str__(self) -> str:
        values = [self.ptype]
        for v in (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5):
            if v is None:
                break
            values.append(v)
        return ", ".join(values)
