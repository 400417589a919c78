"""Web sign-in API: open a cookie session for the browser, and end it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.params import JSONBody

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity import audit
from inopsio.identity.authentication import PUBLIC_OPT, require_user
from inopsio.identity.controllers import LoginIn, client_of, second_factor_of
from inopsio.identity.web_session import CSRF_HEADER_NAME, WebLoginOut


class WebSessionController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/web-login", status_code=200, opt={PUBLIC_OPT: True})
    async def web_login(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[LoginIn]
    ) -> Response[WebLoginOut]:
        """Sign in the browser: the same checks as ``/login`` (throttling, 2FA, audit), answered with an
        HttpOnly session cookie instead of tokens, and the CSRF token to send as ``X-CSRF-Token``.
        """
        # A cross-site form can post urlencoded, multipart or text/plain without a preflight, but not
        # JSON: insisting on JSON keeps other sites from signing a browser in to their own account.
        if request.content_type[0] != "application/json":
            raise Problem(415, "unsupported-media-type", "Send the sign-in as application/json.")
        client = client_of(request)
        web_sessions = kernel.identity.web_sessions
        opened = await kernel.identity.accounts.sign_in(
            tenant,
            data.email,
            data.password,
            client,
            web_sessions.open,
            second_factor=second_factor_of(kernel, tenant, data, client),
        )
        return Response(
            WebLoginOut(
                user_id=opened.user_id,
                session_id=opened.session_id,
                csrf_token=opened.csrf_token,
                csrf_header=CSRF_HEADER_NAME,
                expires_at=opened.expires_at,
            ),
            cookies=web_sessions.cookies(request.scope, opened),
            headers={"Cache-Control": "no-store"},
        )

    @post("/web-logout", status_code=204)
    async def web_logout(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant
    ) -> Response[None]:
        """Sign the browser out: its session ends and its cookies are cleared."""
        principal, user_id = require_user(request)
        assert principal.session_id is not None
        await kernel.identity.accounts.revoke_sessions(tenant.id, [principal.session_id], "signed out")
        client = client_of(request)
        async with kernel.db.session(tenant.id) as session:
            await audit.record(
                session, tenant.id, "auth.signout", actor_id=user_id, ip=client.ip, user_agent=client.user_agent
            )
        return Response(None, status_code=204, cookies=kernel.identity.web_sessions.cleared_cookies(request.scope))
