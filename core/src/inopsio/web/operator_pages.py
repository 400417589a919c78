"""The operator console: tenants (search, create, suspend, resume), their quotas and usage charts.

Platform operators sign in with their operator token (``inopsio operator create-token``); the console
keeps it in an HttpOnly, SameSite=Strict cookie and every change goes through the platform API
(``/api/v1/platform``) with a CSRF token derived from it.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import Body, FromPath, FromQuery
from sqlalchemy import select

from inopsio.deps import KernelDep
from inopsio.errors import Problem
from inopsio.platform.auth import OPERATOR_COOKIE, TOKEN_PREFIX, digest, operator_csrf, operator_guard
from inopsio.platform.models import OperatorToken
from inopsio.tenancy.resolution import TENANCY_OPT
from inopsio.web.render import page, redirect

Req = Request[Any, Any, Any]
OUTSIDE = {TENANCY_OPT: "none"}


class OperatorSignIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=10, max_length=200)]


def _csrf(request: Req) -> str:
    return operator_csrf(request.app.state.kernel, request.cookies.get(OPERATOR_COOKIE, ""))


@get("/operator/login", opt=OUTSIDE, include_in_schema=False)
async def operator_login_page(request: Req) -> Response[Any]:
    return await page(request, "shell/operator/login.html", {"title": "Operator sign-in"})


@post("/operator/session", opt=OUTSIDE, status_code=200, include_in_schema=False)
async def operator_sign_in(
    request: Req, kernel: KernelDep, data: Annotated[OperatorSignIn, Body()]
) -> Response[dict[str, str]]:
    """Check an operator token and keep it in the console's cookie."""
    if request.content_type[0] != "application/json":
        raise Problem(415, "unsupported-media-type", "Send the token as application/json.")
    token = data.token.strip()
    async with kernel.db.session(None) as session:
        row = (
            await session.execute(
                select(OperatorToken.id).where(
                    OperatorToken.token_hash == digest(token), OperatorToken.revoked_at.is_(None)
                )
            )
        ).scalar_one_or_none()
    if not token.startswith(TOKEN_PREFIX) or row is None:
        raise Problem(401, "unauthorized", "This operator token is unknown or revoked.")
    secure = kernel.settings.is_production or request.url.scheme == "https"
    cookie = Cookie(
        key=OPERATOR_COOKIE, value=token, httponly=True, samesite="strict", secure=secure, path="/", max_age=8 * 3600
    )
    return Response({"status": "signed-in"}, cookies=[cookie], headers={"Cache-Control": "no-store"})


@post("/operator/logout", opt=OUTSIDE, status_code=303, include_in_schema=False, guards=[operator_guard])
async def operator_sign_out() -> Response[None]:
    response = redirect("/operator/login")
    response.delete_cookie(OPERATOR_COOKIE, path="/")
    return response


@get("/operator", opt=OUTSIDE, guards=[operator_guard], include_in_schema=False)
async def operator_tenants_page(
    request: Req,
    kernel: KernelDep,
    search: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> Response[Any]:
    status = status if status in ("active", "suspended") else None
    items, total = await kernel.tenants.list(search=search or None, status=status, after=after or None, limit=51)
    return await page(
        request,
        "shell/operator/tenants.html",
        {
            "title": "Tenants",
            "tenants": items[:50],
            "total": total,
            "next_after": items[49].slug if len(items) > 50 else None,
            "search": search or "",
            "status": status or "",
            "csrf_token": _csrf(request),
        },
    )


@get("/operator/tenants/{tenant_id:uuid}", opt=OUTSIDE, guards=[operator_guard], include_in_schema=False)
async def operator_tenant_page(request: Req, kernel: KernelDep, tenant_id: FromPath[UUID]) -> Response[Any]:
    tenant = await kernel.tenants.get(tenant_id)
    defaults = msgspec.to_builtins(kernel.settings.quotas)
    return await page(
        request,
        "shell/operator/tenant.html",
        {"title": tenant.name, "subject": tenant, "defaults": defaults, "csrf_token": _csrf(request)},
    )
