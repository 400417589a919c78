"""The browser's side of OIDC sign-in: what a sign-in that did not end in a session shows, and the
page that confirms a link to a provider account (from the mailed link, or with the password)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, get
from litestar.params import FromQuery

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.identity.authentication import PUBLIC_OPT
from inopsio.identity.emailed_tokens import invalid_token
from inopsio.identity.oidc_links import IdentityLinks
from inopsio.identity.principal import principal_of
from inopsio.web.render import page, redirect

if TYPE_CHECKING:
    from inopsio.errors import Problem
    from inopsio.identity.oidc_links import LinkConfirmationSent

Req = Request[Any, Any, Any]
LINK_PAGE = "/link-identity"


def _display(name: str) -> str:
    """A provider's name as the sign-in page shows it (``corp-sso`` is "Corp Sso")."""
    return name.replace("-", " ").replace("_", " ").title()


async def link_sent_page(request: Req, provider: str, sent: LinkConfirmationSent) -> Response[Any]:
    """A first sign-in through a provider: the holder of the address must confirm the link (202)."""
    with_password = f"{LINK_PAGE}?{urlencode({'pending': sent.pending_token})}"
    return await page(
        request,
        "shell/oidc_result.html",
        {
            "heading": "Check your mailbox",
            "paragraphs": [
                f"This is the first time this {_display(provider)} account signs in here. Before it can open "
                "an account, the account's holder must agree: we sent a link to the e-mail address the "
                "provider gave us. Follow it within an hour, then sign in with "
                f"{_display(provider)} again.",
                "Do you already sign in here with a password? You can link it now instead: sign in, then "
                "confirm with your password.",
            ],
            "hint": "No mail? Check your spam folder, or sign in with the provider again in a few minutes.",
            "actions": [
                {"label": "Back to sign-in", "href": "/login"},
                {"label": "Sign in with a password to link now", "href": "/login?next=" + quote(with_password)},
            ],
        },
        status_code=202,
    )


async def sign_in_failed_page(request: Req, provider: str | None, problem: Problem) -> Response[Any]:
    """A sign-in through a provider that was refused, said in words, with the way forward."""
    actions = [{"label": "Sign in with a password", "href": "/login"}]
    if provider is not None:
        actions.append({"label": f"Try {_display(provider)} again", "href": f"/api/v1/auth/oidc/{provider}/start"})
    return await page(
        request,
        "shell/oidc_result.html",
        {
            "heading": f"Signing in with {_display(provider)} did not work" if provider else "Signing in did not work",
            "paragraphs": [problem.detail],
            "hint": f"Reference: {problem.code}",
            "actions": actions,
        },
        status_code=problem.status_code,
    )


@get(LINK_PAGE, opt={PUBLIC_OPT: True}, include_in_schema=False)
async def link_identity_page(
    request: Req,
    kernel: KernelDep,
    tenant: CurrentTenant,
    token: FromQuery[str] = "",
    pending: FromQuery[str] = "",
) -> Response[Any]:
    """Confirm a link: ``token`` from the mailed link (one click), or ``pending`` from the sign-in
    answer (signed in, with the password again)."""
    if pending:
        if principal_of(request.scope) is None:
            return redirect("/login?next=" + quote(f"{LINK_PAGE}?{urlencode({'pending': pending})}"))
        return await page(
            request,
            "shell/link_identity.html",
            {
                "heading": "Link a sign-in to your account",
                "intro": "Give your password to let the provider account you just signed in with sign you "
                "in here from now on.",
                "api": "/api/v1/me/identities/confirm",
                "token": pending,
                "with_password": True,
                "button": "Link it",
                "redirect_to": "/",
                "success": "The provider account is linked to yours.",
            },
        )
    if not token:
        return redirect("/login")  # nothing to confirm
    link = await IdentityLinks(kernel).describe(token)
    if link is None or link.tenant_id != str(tenant.id):
        # A browser gets the shell's error page with this detail; an API client the problem document.
        raise invalid_token()
    provider = _display(link.provider)
    intro = (
        f"Create your account here with {link.email}, signed in to with {provider}."
        if link.user_id is None
        else f"Let {provider} sign in to your account {link.email} here from now on."
    )
    return await page(
        request,
        "shell/link_identity.html",
        {
            "heading": f"Sign in with {provider}?",
            "intro": intro,
            "warning": f"Only confirm if you just signed in with {provider} yourself: whoever controls that "
            "provider account can then sign in as you here.",
            "api": "/api/v1/auth/identities/confirm",
            "token": token,
            "with_password": False,
            "button": "Create my account" if link.user_id is None else "Link it",
            "redirect_to": "/login",
            "success": f"Done: now sign in with {provider}.",
        },
    )
