"""The web shell as a kernel plugin: its pages, static files, admin menu and welcome card."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from inopsio import hookimpl
from inopsio.web import branding, operator_pages, pages
from inopsio.web.assets import serve_static
from inopsio.web.contributions import DashboardCard, MenuEntry
from inopsio.web.errors import browser_response
from inopsio.web.models import TenantAsset


@hookimpl
def register_models(register: Any) -> None:
    register(TenantAsset)


@hookimpl
def register_routes(register: Any) -> None:
    register(serve_static)
    register(branding.upload_logo)
    register(branding.branding_asset)
    for handler in (
        pages.login_page,
        pages.signup_page,
        pages.signup_confirm_page,
        pages.verify_email_page,
        pages.forgot_password_page,
        pages.reset_password_page,
        pages.accept_invitation_page,
        pages.dashboard_page,
        pages.welcome_card,
        pages.account_page,
        pages.members_page,
        pages.api_keys_page,
        pages.roles_page,
        pages.settings_page,
        pages.audit_page,
        pages.webhooks_page,
        pages.usage_page,
        pages.my_notifications,
        operator_pages.operator_login_page,
        operator_pages.operator_sign_in,
        operator_pages.operator_sign_out,
        operator_pages.operator_tenants_page,
        operator_pages.operator_tenant_page,
    ):
        register(handler)


@hookimpl
def render_error(
    request: Request[Any, Any, Any], status: int, code: str, detail: str, members: dict[str, Any]
) -> Response[Any] | None:
    return browser_response(request, status, code, detail, members)


@hookimpl
def register_menu(register: Any) -> None:
    admin = "Admin"
    register(
        MenuEntry(
            label="Members",
            href="/admin/members",
            section=admin,
            permission="kernel.members.read",
            icon="users",
            order=10,
        )
    )
    register(
        MenuEntry(
            label="Roles", href="/admin/roles", section=admin, permission="kernel.roles.read", icon="shield", order=20
        )
    )
    register(
        MenuEntry(
            label="Settings",
            href="/admin/settings",
            section=admin,
            permission="kernel.settings.write",
            icon="settings",
            order=30,
        )
    )
    register(
        MenuEntry(
            label="API keys",
            href="/admin/api-keys",
            section=admin,
            permission="kernel.api_keys.write",
            icon="key",
            order=35,
        )
    )
    register(
        MenuEntry(
            label="Audit log", href="/admin/audit", section=admin, permission="kernel.audit.read", icon="list", order=40
        )
    )
    register(
        MenuEntry(
            label="Webhooks",
            href="/admin/webhooks",
            section=admin,
            permission="kernel.webhooks.write",
            icon="flow",
            order=50,
        )
    )
    register(
        MenuEntry(
            label="Usage",
            href="/admin/usage",
            section=admin,
            permission="kernel.settings.write",
            icon="chart",
            order=60,
        )
    )


@hookimpl
def register_dashboard_cards(register: Any) -> None:
    register(DashboardCard(name="kernel.welcome", title="Your workspace", href="/cards/welcome", order=0))
