"""The kernel's own pages: sign-in and sign-up, account, tenant admin, dashboard.

Pages read through the same models the API uses and render HTML; every change a page makes goes
through the JSON API (``/api/v1/...``) from ``shell.js``, so the pages and the API share one set of
checks, audit entries and events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from litestar import Request, Response, get
from litestar.params import FromQuery
from sqlalchemy import and_, func, or_, select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity.audit_search import AuditFilter, search_audit
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT
from inopsio.identity.models import AuthSession, Invitation, Membership, OidcProvider, User
from inopsio.identity.oidc_links import IdentityLinks
from inopsio.identity.principal import principal_of
from inopsio.notifications import NOTIFICATION_TYPE
from inopsio.site_paths import is_site_path
from inopsio.tenancy.resolution import STATE_KEY, TENANCY_OPT
from inopsio.web.render import page, redirect, tenant_host_url, viewer_of

Req = Request[Any, Any, Any]


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no ``//``): an open redirect is a phishing tool."""
    return value if value and is_site_path(value) else "/"


def _tenant(request: Req) -> Any:
    return request.scope.get("state", {}).get(STATE_KEY)


# -- public pages -----------------------------------------------------------------------------------


#: Public pages that also answer on the platform's own address, where no tenant is named.
ENTRY = {PUBLIC_OPT: True, "entry": True}


@get("/login", opt=ENTRY, include_in_schema=False)
async def login_page(
    request: Req, kernel: KernelDep, next: FromQuery[str | None] = None, workspace: FromQuery[str | None] = None
) -> Response[Any]:
    tenant = _tenant(request)
    if tenant is None and workspace:
        slug = workspace.strip().lower()
        if await kernel.tenants.directory.get(slug) is None:
            return await page(
                request,
                "shell/login.html",
                {
                    "next": "/",
                    "providers": [],
                    "base_domain": kernel.settings.base_domain,
                    "message": f"There is no workspace {slug!r}. Check the name, or create one.",
                },
                status_code=404,
            )
        return redirect(tenant_host_url(request, slug, "/login"))
    if tenant is not None and principal_of(request.scope) is not None:
        return redirect(_safe_next(next))
    providers = []
    if tenant is not None:
        async with kernel.db.session(tenant.id) as session:
            rows = (await session.scalars(select(OidcProvider).where(OidcProvider.enabled.is_(True)))).all()
        providers = [{"name": p.name, "display_name": p.name.replace("-", " ").title()} for p in rows]
    message = {
        "verified": "Your email is verified: sign in.",
        "reset": "Your password is changed: sign in.",
        "signed-up": "Your workspace is ready: sign in.",
        "joined": "Welcome aboard: sign in.",
    }.get(request.query_params.get("m", ""))
    return await page(
        request,
        "shell/login.html",
        {
            "next": _safe_next(next),
            "providers": providers,
            "base_domain": kernel.settings.base_domain,
            "message": message,
        },
    )


@get("/signup", opt={TENANCY_OPT: "none"}, include_in_schema=False)
async def signup_page(request: Req, kernel: KernelDep) -> Response[Any]:
    return await page(request, "shell/signup.html", {"base_domain": kernel.settings.base_domain})


@get("/signup/confirm", opt={TENANCY_OPT: "none"}, include_in_schema=False)
async def signup_confirm_page(request: Req, token: FromQuery[str] = "") -> Response[Any]:
    """The page behind the mailed sign-up link: a button (mail scanners fetch links, they do not post)."""
    return await page(
        request,
        "shell/token_form.html",
        {
            "heading": "Create your workspace",
            "intro": "This link proves the e-mail address is yours. Create the workspace, then sign in to it.",
            "api": "/api/v1/auth/signup/confirm",
            # Filled in by shell.js from the answer: the new workspace's own address.
            "redirect_to": tenant_host_url(request, "{tenant.slug}", "/login?m=signed-up"),
            "token": token,
            "fields": [],
            "button": "Create my workspace",
            "auto": False,
        },
    )


@get("/verify-email", opt={PUBLIC_OPT: True}, include_in_schema=False)
async def verify_email_page(request: Req, tenant: CurrentTenant, token: FromQuery[str] = "") -> Response[Any]:
    return await page(
        request,
        "shell/token_form.html",
        {
            "heading": "Verify your email",
            "intro": "Confirm that this address is yours.",
            "api": "/api/v1/auth/verify-email",
            "redirect_to": "/login?m=verified",
            "token": token,
            "fields": [],
            "button": "Verify my email",
            "auto": False,
        },
    )


@get("/forgot-password", opt={PUBLIC_OPT: True}, include_in_schema=False)
async def forgot_password_page(request: Req, tenant: CurrentTenant) -> Response[Any]:
    return await page(request, "shell/forgot.html")


@get("/reset-password", opt={PUBLIC_OPT: True}, include_in_schema=False)
async def reset_password_page(request: Req, tenant: CurrentTenant, token: FromQuery[str] = "") -> Response[Any]:
    return await page(
        request,
        "shell/token_form.html",
        {
            "heading": "Choose a new password",
            "intro": "",
            "api": "/api/v1/auth/password/reset",
            "redirect_to": "/login?m=reset",
            "token": token,
            "button": "Change password",
            "auto": False,
            "fields": [
                {
                    "name": "password",
                    "label": "New password",
                    "type": "password",
                    "autocomplete": "new-password",
                    "required": True,
                    "hint": "At least 10 characters; a phrase of several words is best.",
                }
            ],
        },
    )


@get("/accept-invitation", opt={PUBLIC_OPT: True}, include_in_schema=False)
async def accept_invitation_page(request: Req, tenant: CurrentTenant, token: FromQuery[str] = "") -> Response[Any]:
    return await page(
        request,
        "shell/token_form.html",
        {
            "heading": "Join the workspace",
            "intro": "You were invited. New here? Choose your name and a password. "
            "Already have an account with this address? Give its password.",
            "api": "/api/v1/auth/invitations/accept",
            "redirect_to": "/login?m=joined",
            "token": token,
            "button": "Join",
            "auto": False,
            "fields": [
                {"name": "name", "label": "Your name", "autocomplete": "name", "required": False},
                {
                    "name": "password",
                    "label": "Password",
                    "type": "password",
                    "autocomplete": "new-password",
                    "required": True,
                },
            ],
        },
    )


# -- signed-in pages --------------------------------------------------------------------------------


@get("/", opt=ENTRY, include_in_schema=False)
async def dashboard_page(request: Req, kernel: KernelDep) -> Response[Any]:
    tenant = _tenant(request)
    if tenant is None or principal_of(request.scope) is None:
        return redirect("/login")
    viewer = await viewer_of(request)
    if viewer is None:
        return redirect("/login")
    cards = kernel.web.cards_for(tenant.module_enabled, viewer.permissions)
    return await page(request, "shell/dashboard.html", {"title": "Dashboard", "cards": cards})


@get("/cards/welcome", include_in_schema=False)
async def welcome_card(request: Req, kernel: KernelDep) -> Response[Any]:
    from inopsio.web.render import fragment

    tenant = _tenant(request)
    async with kernel.db.session(tenant.id) as session:
        members = await session.scalar(select(func.count()).select_from(Membership)) or 0
    return await fragment(request, "shell/cards/welcome.html", {"members": members})


@get("/account", include_in_schema=False)
async def account_page(request: Req, kernel: KernelDep) -> Response[Any]:
    principal = principal_of(request.scope)
    tenant = _tenant(request)
    assert principal is not None
    assert principal.user_id is not None
    now = dt.datetime.now(dt.UTC)
    async with kernel.db.session(tenant.id, user_id=principal.user_id) as session:
        sessions = (
            await session.scalars(
                select(AuthSession)
                .where(
                    AuthSession.user_id == principal.user_id,
                    AuthSession.tenant_id == tenant.id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > now,
                )
                .order_by(AuthSession.last_used_at.desc())
                .limit(50)
            )
        ).all()
    owned = await kernel.identity.api_keys.list_keys(tenant.id, owned_by=principal.user_id)
    keys = [k for k in owned if k.status != "revoked"]
    identities = await IdentityLinks(kernel).linked(tenant, principal.user_id)
    viewer = await viewer_of(request)
    return await page(
        request,
        "shell/account.html",
        {
            "title": "Your account",
            "sessions": sessions,
            "current_session": principal.session_id,
            "identities": identities,
            "keys": keys,
            "can_keys": viewer is not None and viewer.can("kernel.api_keys.write"),
            "grantable": sorted(viewer.permissions) if viewer else [],
            "status_labels": API_KEY_STATUS_LABELS,
        },
    )


API_KEY_STATUS_LABELS = {
    "active": "Active",
    "revoked": "Revoked",
    "expired": "Expired",
    "owner_removed": "Owner left",
}


@get("/admin/api-keys", opt={PERMISSION_OPT: "kernel.api_keys.write"}, include_in_schema=False)
async def api_keys_page(request: Req, kernel: KernelDep) -> Response[Any]:
    """Every key of the tenant with its owner and status, to hand a leaver's keys over or revoke them."""
    tenant = _tenant(request)
    keys = await kernel.identity.api_keys.list_keys(tenant.id)
    async with kernel.db.session(tenant.id) as session:
        members = (
            await session.scalars(select(User).join(Membership, Membership.user_id == User.id).order_by(User.email))
        ).all()
    return await page(
        request,
        "shell/admin/api_keys.html",
        {"title": "API keys", "keys": keys, "members": members, "status_labels": API_KEY_STATUS_LABELS},
    )


@get("/admin/members", opt={PERMISSION_OPT: "kernel.members.read"}, include_in_schema=False)
async def members_page(request: Req, kernel: KernelDep) -> Response[Any]:
    tenant = _tenant(request)
    authorizer = kernel.identity.authorizer
    async with kernel.db.session(tenant.id) as session:
        rows = (
            await session.execute(
                select(Membership, User).join(User, User.id == Membership.user_id).order_by(User.email)
            )
        ).all()
        invitations = (
            await session.scalars(
                select(Invitation)
                .where(
                    Invitation.accepted_at.is_(None),
                    Invitation.revoked_at.is_(None),
                    Invitation.expires_at > dt.datetime.now(dt.UTC),
                )
                .order_by(Invitation.created_at.desc())
            )
        ).all()
    members = [
        {
            "user_id": u.id,
            "email": u.email,
            "name": u.name,
            "role": authorizer.role_of(u.id, tenant.id) or m.role,
            "joined_at": m.created_at,
            "totp": u.totp_enabled_at is not None,
        }
        for m, u in rows
    ]
    roles = await _role_names(kernel, tenant.id)
    return await page(
        request,
        "shell/admin/members.html",
        {"title": "Members", "members": members, "invitations": invitations, "roles": roles},
    )


async def _role_names(kernel: Any, tenant_id: UUID) -> list[str]:
    from inopsio.identity.models import CustomRole
    from inopsio.identity.rbac import BUILTIN_ROLES

    async with kernel.db.session(tenant_id) as session:
        custom = (await session.scalars(select(CustomRole.name).order_by(CustomRole.name))).all()
    return [*BUILTIN_ROLES, *custom]


@get("/admin/roles", opt={PERMISSION_OPT: "kernel.roles.read"}, include_in_schema=False)
async def roles_page(request: Req, kernel: KernelDep) -> Response[Any]:
    from inopsio.identity.models import CustomRole
    from inopsio.identity.rbac import BUILTIN_ROLES

    tenant = _tenant(request)
    authorizer = kernel.identity.authorizer
    async with kernel.db.session(tenant.id) as session:
        custom = (await session.scalars(select(CustomRole).order_by(CustomRole.name))).all()
    by_module: dict[str, list[Any]] = {}
    for permission in sorted(authorizer.permissions.values(), key=lambda p: p.name):
        by_module.setdefault(permission.name.split(".", 1)[0], []).append(permission)
    return await page(
        request,
        "shell/admin/roles.html",
        {"title": "Roles", "builtin": BUILTIN_ROLES, "custom": custom, "by_module": by_module},
    )


@get("/admin/settings", opt={PERMISSION_OPT: "kernel.settings.write"}, include_in_schema=False)
async def settings_page(request: Req, kernel: KernelDep) -> Response[Any]:
    tenant = _tenant(request)
    modules = kernel.plugins.plugin_names()
    async with kernel.db.session(tenant.id) as session:
        providers = (await session.scalars(select(OidcProvider).order_by(OidcProvider.name))).all()
    return await page(
        request,
        "shell/admin/settings.html",
        {"title": "Settings", "settings": tenant.settings, "modules": modules, "providers": providers},
    )


@get("/admin/audit", opt={PERMISSION_OPT: "kernel.audit.read"}, include_in_schema=False)
async def audit_page(
    request: Req,
    kernel: KernelDep,
    action: FromQuery[str | None] = None,
    outcome: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
) -> Response[Any]:
    tenant = _tenant(request)
    utc = dt.UTC
    try:
        # A filter form sends empty fields as empty strings: those mean "no filter".
        since_day = dt.date.fromisoformat(since) if since else None
        until_day = dt.date.fromisoformat(until) if until else None
    except ValueError:
        raise Problem(400, "invalid-filter", "Dates are written like 2026-11-25.") from None
    where = AuditFilter(
        action=action or None,
        outcome=outcome or None,
        since=dt.datetime.combine(since_day, dt.time(), utc) if since_day else None,
        until=dt.datetime.combine(until_day + dt.timedelta(days=1), dt.time(), utc) if until_day else None,
    )
    try:
        async with kernel.db.session(tenant.id) as session:
            entries, next_cursor = await search_audit(session, where, before=before or None, limit=50)
    except ValueError as exc:
        raise Problem(400, "invalid-filter", str(exc)) from exc
    query = {k: v for k, v in {"action": action, "outcome": outcome, "since": since, "until": until}.items() if v}
    return await page(
        request,
        "shell/admin/audit.html",
        {"title": "Audit log", "entries": entries, "next_cursor": next_cursor, "filters": query},
    )


@get("/admin/webhooks", opt={PERMISSION_OPT: "kernel.webhooks.write"}, include_in_schema=False)
async def webhooks_page(request: Req, kernel: KernelDep) -> Response[Any]:
    from inopsio.webhooks.models import WebhookSubscription

    tenant = _tenant(request)
    async with kernel.db.session(tenant.id) as session:
        hooks = (await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.created_at))).all()
    types = sorted(kernel.events.types)
    return await page(request, "shell/admin/webhooks.html", {"title": "Webhooks", "hooks": hooks, "types": types})


@get("/admin/usage", opt={PERMISSION_OPT: "kernel.settings.write"}, include_in_schema=False)
async def usage_page(request: Req, kernel: KernelDep) -> Response[Any]:
    tenant = _tenant(request)
    today = dt.datetime.now(dt.UTC).date()
    daily, gauges = await kernel.quotas.usage(tenant.id, today - dt.timedelta(days=29), today)
    per_metric: dict[str, int] = {}
    for row in daily:
        per_metric[row.metric] = per_metric.get(row.metric, 0) + row.value
    rows = [
        {"metric": metric, "used": used, "limit": tenant.quotas.get(metric), "period": "30 days"}
        for metric, used in sorted(per_metric.items())
    ]
    rows += [
        {"metric": g.metric, "used": g.value, "limit": tenant.quotas.get(g.metric), "period": "now"} for g in gauges
    ]
    return await page(request, "shell/admin/usage.html", {"title": "Usage", "rows": rows, "quotas": tenant.quotas})


@get("/api/v1/me/notifications", tags=["me"])
async def my_notifications(request: Req, kernel: KernelDep, limit: FromQuery[int] = 20) -> list[dict[str, Any]]:
    """Recent in-app notifications for the signed-in user (theirs and the tenant-wide ones), newest first."""
    from inopsio.events.models import EventRecord

    principal = principal_of(request.scope)
    tenant = _tenant(request)
    if principal is None or principal.user_id is None:
        raise Problem(403, "forbidden", "Notifications belong to users, not API keys.")
    limit = max(1, min(limit, 100))
    recipient = EventRecord.data["recipient_id"].astext
    async with kernel.db.session(tenant.id) as session:
        rows = (
            await session.scalars(
                select(EventRecord)
                .where(
                    and_(
                        EventRecord.type == NOTIFICATION_TYPE,
                        or_(recipient.is_(None), recipient == str(principal.user_id)),
                    )
                )
                .order_by(EventRecord.occurred_at.desc())
                .limit(limit)
            )
        ).all()
    return [{"id": str(r.id), "occurred_at": r.occurred_at.isoformat(), **r.data} for r in rows]
