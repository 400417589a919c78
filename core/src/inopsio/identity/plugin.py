"""The kernel's identity feature, registered through the plugin hooks."""

from __future__ import annotations

from typing import Any

from inopsio import hookimpl
from inopsio.identity import (
    admin_controllers,
    controllers,
    invitations,
    models,
    oidc_controllers,
    oidc_pages,
    recovery,
    totp_controllers,
    web_session_controllers,
)
from inopsio.identity.rbac import Permission

KERNEL_PERMISSIONS = (
    Permission(name="kernel.members.read", description="See members and invitations", roles=("admin", "manager")),
    Permission(
        name="kernel.members.write",
        description="Invite, remove members, change roles, end their sessions",
        roles=("admin",),
    ),
    Permission(name="kernel.roles.read", description="See roles and permissions", roles=("admin",)),
    Permission(name="kernel.roles.write", description="Create and change custom roles", roles=("admin",)),
    Permission(
        name="kernel.settings.write",
        description="Change the tenant's settings, modules and sign-in options",
        roles=("admin",),
    ),
    Permission(name="kernel.api_keys.write", description="Create and revoke API keys", roles=("admin",)),
    Permission(name="kernel.audit.read", description="Read the audit log", roles=("admin",)),
)


@hookimpl
def register_models(register: Any) -> None:
    for model in (
        models.User,
        models.RecoveryCode,
        models.Membership,
        models.AuthSession,
        models.RefreshToken,
        models.UserToken,
        models.UserIdentity,
        models.Invitation,
        models.ApiKey,
        models.CustomRole,
        models.OidcProvider,
        models.AuditEntry,
        models.RbacRule,
    ):
        register(model)


@hookimpl
def register_routes(register: Any) -> None:
    register(controllers.AuthController)
    register(web_session_controllers.WebSessionController)
    register(controllers.MeController)
    register(totp_controllers.TotpController)
    register(controllers.MembersController)
    register(controllers.RolesController)
    register(controllers.list_permissions)
    register(admin_controllers.ApiKeysController)
    register(admin_controllers.AuditController)
    register(admin_controllers.TenantSettingsController)
    register(oidc_controllers.OidcProvidersController)
    register(oidc_controllers.OidcSignInController)
    register(oidc_controllers.IdentityConfirmationController)
    register(oidc_controllers.MyIdentitiesController)
    register(oidc_pages.link_identity_page)
    register(recovery.RecoveryController)
    register(invitations.InvitationsController)
    register(invitations.accept_invitation)


@hookimpl
def register_permissions(register: Any) -> None:
    for permission in KERNEL_PERMISSIONS:
        register(permission)
