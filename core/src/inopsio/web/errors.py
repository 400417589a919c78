"""Readable error pages for browsers; API clients keep getting RFC 9457 problem documents.

A browser asking for a page (``Accept: text/html``, outside ``/api/``) that is not signed in is sent
to the sign-in page; every other refusal (403, 404, 429, 500, suspended tenant) is a page in the
shell's style, saying what happened and what to do, with the same status code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response

from inopsio.web.render import wants_html

TITLES = {
    400: "This request cannot be served",
    401: "Please sign in",
    403: "You cannot open this page",
    404: "Page not found",
    405: "Not possible here",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
HINTS = {
    403: "Ask an administrator of your workspace for access, or go back to the dashboard.",
    404: "The address may be mistyped, or the page was removed.",
    429: "Wait a minute and try again.",
    500: "It has been logged. Try again; if it keeps happening, quote the request id below to support.",
    503: "Try again in a few moments.",
}


def browser_response(
    request: Request[Any, Any, Any], status: int, code: str, detail: str, members: dict[str, Any]
) -> Response[Any] | None:
    """A browser's version of a problem: a sign-in redirect for 401, otherwise an error page.

    ``None`` for API clients, who get the problem document.
    """
    if not wants_html(request.scope):
        return None
    if status == 401 and request.url.path.startswith("/operator"):
        return Response(content=None, status_code=303, headers={"Location": "/operator/login"})
    if status == 401 or code == "tenant-required":
        target = login_location(request.scope) if status == 401 else "/login"
        return Response(content=None, status_code=303, headers={"Location": target})
    html = error_html(request.scope, status, code, detail, **members)
    # Litestar adds the charset to a text/* media type itself (given one, it would send it twice).
    return Response(content=html, status_code=status, media_type="text/html")


def error_html(scope: Any, status: int, code: str, detail: str, **extra: Any) -> str:
    """The HTML of an error page (standalone: it never queries the database)."""
    kernel = scope["app"].state.kernel
    tenant = scope.get("state", {}).get("inopsio_tenant")
    if code == "tenant-suspended":
        title, hint = "This workspace is suspended", "Its data is kept. Contact the platform operator to resume it."
    elif code == "tenant-not-found":
        title, hint = "No such workspace", "Check the address, or sign up to create a workspace."
    else:
        title, hint = TITLES.get(status, "Error"), HINTS.get(status, "")
    return str(
        kernel.web.render(
            "shell/error.html",
            {
                "status": status,
                "code": code,
                "title": title,
                "detail": detail,
                "hint": hint,
                "request_id": extra.get("request_id"),
                "tenant": tenant,
                "brand_name": tenant.name if tenant else "Inopsio",
                "brand_color": (
                    tenant.settings.branding.color if tenant and tenant.settings.branding.color else "#1f5fbf"
                ),
            },
        )
    )


def login_location(scope: Any) -> str:
    path = str(scope.get("path", "/"))
    query = scope.get("query_string", b"").decode("latin-1")
    target = path + (f"?{query}" if query else "")
    return "/login?next=" + quote(target, safe="")
