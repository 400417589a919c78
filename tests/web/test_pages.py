"""The web shell over HTTP: pages, menu filtering, static files, error pages, notifications."""

from __future__ import annotations

import re
from typing import Any

import pytest

HTML = {"Accept": "text/html,application/xhtml+xml"}


def _html(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, **HTML}


async def test_signed_out_page_request_is_sent_to_sign_in_with_the_page_to_return_to(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    response = await client.get("/admin/members?x=1", headers=_html({"X-Tenant": tenant.slug}))
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fadmin%2Fmembers%3Fx%3D1"


async def test_api_clients_still_get_problem_documents(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    response = await client.get("/api/v1/members", headers={"X-Tenant": tenant.slug, "Accept": "text/html"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_menu_shows_only_what_the_role_allows(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    viewer = await sign_in(tenant, "viewer")
    owner_page = (await client.get("/", headers=_html(owner))).text
    viewer_page = (await client.get("/", headers=_html(viewer))).text
    assert 'href="/admin/audit"' in owner_page
    assert 'href="/admin/members"' in owner_page
    assert 'href="/admin/audit"' not in viewer_page
    assert 'href="/admin/settings"' not in viewer_page
    forbidden = await client.get("/admin/audit", headers=_html(viewer))
    assert forbidden.status_code == 403
    assert "You cannot open this page" in forbidden.text
    assert forbidden.headers["content-type"].startswith("text/html")


async def test_plugin_menu_entries_follow_the_tenants_modules(client: Any, make_tenant: Any, sign_in: Any) -> None:
    on = await make_tenant()
    off = await make_tenant(settings={"disabled_modules": ["sample"]})
    page_on = (await client.get("/", headers=_html(await sign_in(on, "member")))).text
    page_off = (await client.get("/", headers=_html(await sign_in(off, "member")))).text
    assert 'href="/sample/notes"' in page_on
    assert 'href="/sample/notes"' not in page_off
    assert "/sample/cards/notes" in page_on
    assert "/sample/cards/notes" not in page_off


async def test_a_plugin_page_renders_inside_the_shell_with_its_own_template_and_static_file(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    headers = await sign_in(tenant, "member")
    response = await client.get("/sample/notes", headers=_html(headers))
    assert response.status_code == 200, response.text
    assert "<h1>Notes</h1>" in response.text
    assert "Welcome" in response.text  # the note on_tenant_created wrote
    script = re.search(r'src="(/static/sample/notes\.[0-9a-f]{12}\.js)"', response.text)
    assert script, "the plugin's script is not referenced under a hashed name"
    asset = await client.get(script.group(1))
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert "javascript" in asset.headers["content-type"]


async def test_static_files_have_hashed_names_that_change_with_their_content(client: Any, kernel: Any) -> None:
    url = kernel.web.assets.url("vendor/htmx.min.js")
    assert re.fullmatch(r"/static/vendor/htmx\.[0-9a-f]{12}\.min\.js", url)
    hashed = await client.get(url)
    assert hashed.status_code == 200
    assert hashed.headers["cache-control"] == "public, max-age=31536000, immutable"
    plain = await client.get("/static/vendor/htmx.min.js")
    assert plain.status_code == 200
    assert "immutable" not in plain.headers["cache-control"]
    assert (await client.get("/static/vendor/htmx.000000000000.min.js")).status_code == 404
    assert (await client.get("/static/../settings.py")).status_code == 404


async def test_suspended_tenant_sees_a_suspension_page(client: Any, kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await kernel.tenants.suspend(tenant.id, "unpaid")
    response = await client.get("/login", headers=_html({"X-Tenant": tenant.slug}))
    assert response.status_code == 403
    assert "This workspace is suspended" in response.text
    api = await client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})
    assert api.headers["content-type"].startswith("application/problem+json")


async def test_unknown_page_is_a_readable_404(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    response = await client.get("/no/such/page", headers=_html(await sign_in(tenant)))
    assert response.status_code == 404
    assert "Page not found" in response.text


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [
        ("/admin/members", "/admin/members"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil", "/"),
        ("/\t/evil.example", "/"),
        ("/%5cevil.example", "/"),
    ],
)
async def test_sign_in_page_only_returns_to_paths_on_this_site(
    client: Any, make_tenant: Any, next_value: str, expected: str
) -> None:
    tenant = await make_tenant()
    response = await client.get("/login", params={"next": next_value}, headers=_html({"X-Tenant": tenant.slug}))
    assert response.status_code == 200
    assert f'data-redirect="{expected}"' in response.text


async def test_workspace_chooser_sends_to_the_tenants_own_address(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    response = await client.get("/login", params={"workspace": tenant.slug}, headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == f"http://{tenant.slug}.localhost/login"
    unknown = await client.get("/login", params={"workspace": "no-such-workspace"}, headers=HTML)
    assert unknown.status_code == 404
    assert "There is no workspace" in unknown.text


async def test_every_admin_page_renders_for_an_owner(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    headers = _html(await sign_in(tenant, "owner"))
    for path in [
        "/",
        "/account",
        "/admin/members",
        "/admin/roles",
        "/admin/settings",
        "/admin/audit",
        "/admin/audit?action=auth.*&outcome=success&since=2020-01-01",
        "/admin/webhooks",
        "/admin/usage",
        "/cards/welcome",
    ]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["cache-control"] == "no-store"


async def test_notifications_reach_their_recipient_only(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    from inopsio.notifications import notify

    tenant = await make_tenant()
    alice = await sign_in(tenant, "member")
    bob = await sign_in(tenant, "member")
    alice_id = (await client.get("/api/v1/me", headers=alice)).json()["user_id"]
    async with kernel.db.session(tenant.id) as session:
        import uuid

        await notify(kernel, session, "Lead assigned to you", recipient_id=uuid.UUID(alice_id), link="/crm/leads/1")
        await notify(kernel, session, "Maintenance tonight", level="warning")
    alice_sees = [n["title"] for n in (await client.get("/api/v1/me/notifications", headers=alice)).json()]
    bob_sees = [n["title"] for n in (await client.get("/api/v1/me/notifications", headers=bob)).json()]
    assert sorted(alice_sees) == ["Lead assigned to you", "Maintenance tonight"]
    assert bob_sees == ["Maintenance tonight"]


async def test_operator_console_signs_in_with_a_token_and_needs_its_csrf_token_for_changes(
    client: Any, kernel: Any, make_tenant: Any
) -> None:
    from inopsio.platform.auth import create_operator_token

    tenant = await make_tenant(name="Console Co")
    assert (await client.get("/operator", headers=HTML)).headers["location"] == "/operator/login"
    refused = await client.post("/operator/session", json={"token": "iop_not-a-real-token"})
    assert refused.status_code == 401
    token = await create_operator_token(kernel.db, f"console-{tenant.slug}")
    signed_in = await client.post("/operator/session", json={"token": token})
    assert signed_in.status_code == 200
    cookie = signed_in.cookies["inopsio_operator"]
    client.cookies.clear()  # the shared test client must not carry the console's cookie into other tests
    jar = {"Cookie": f"inopsio_operator={cookie}"}
    listing = await client.get("/operator", params={"search": tenant.slug}, headers={**HTML, **jar})
    assert listing.status_code == 200
    assert "Console Co" in listing.text
    csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', listing.text)
    assert csrf
    detail = await client.get(f"/operator/tenants/{tenant.id}", headers={**HTML, **jar})
    assert detail.status_code == 200
    # A change on the cookie without the page's CSRF token is refused; with it, it goes through.
    forged = await client.post(f"/api/v1/platform/tenants/{tenant.id}/suspend", json={}, headers=jar)
    assert forged.status_code == 403
    done = await client.post(
        f"/api/v1/platform/tenants/{tenant.id}/suspend", json={}, headers={**jar, "X-CSRF-Token": csrf.group(1)}
    )
    assert done.status_code == 200, done.text
    assert (await kernel.tenants.get(tenant.id)).status == "suspended"


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


async def test_logo_upload_brands_the_shell_and_refuses_what_is_not_an_image(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    member = await sign_in(tenant, "member")
    forbidden = await client.post("/api/v1/tenant/logo", files={"data": ("logo.png", PNG, "image/png")}, headers=member)
    assert forbidden.status_code == 403
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    refused = await client.post("/api/v1/tenant/logo", files={"data": ("logo.png", svg, "image/png")}, headers=owner)
    assert refused.status_code == 415
    assert refused.json()["type"].endswith("unsupported-image")
    too_big = PNG + b"\0" * (1024 * 1024)
    large = await client.post("/api/v1/tenant/logo", files={"data": ("big.png", too_big, "image/png")}, headers=owner)
    assert large.status_code == 413
    done = await client.post("/api/v1/tenant/logo", files={"data": ("logo.png", PNG, "image/png")}, headers=owner)
    assert done.status_code == 201, done.text
    url = done.json()["logo_url"]
    served = await client.get(url, headers={"X-Tenant": tenant.slug})
    assert served.status_code == 200
    assert served.content == PNG
    assert served.headers["content-type"] == "image/png"
    page = await client.get("/login", headers={"X-Tenant": tenant.slug, **HTML})
    assert url in (await client.get("/", headers=_html(owner))).text
    assert page.status_code == 200
    other = await make_tenant()
    assert (await client.get(url, headers={"X-Tenant": other.slug})).status_code == 404


async def test_tenant_switcher_lists_every_workspace_of_the_user(client: Any, kernel: Any, make_tenant: Any) -> None:
    first = await make_tenant(name="Alpha Works")
    second = await make_tenant(name="Beta Works")
    email = f"both-{first.slug}@example.com"
    password = "a long shared passphrase 99"
    await kernel.identity.accounts.create_member(first, email, password, "member", verified=True)
    await kernel.identity.accounts.create_member(second, email, password, "viewer", verified=True)
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": first.slug}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Tenant": first.slug, **HTML}
    html = (await client.get("/", headers=headers)).text
    assert "data-tenant-switcher" in html
    assert f'<option value="{first.slug}" selected>Alpha Works</option>' in html
    assert f'<option value="{second.slug}" >Beta Works</option>' in html


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/",
        "//evil.example/login",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/%5cevil.example",
        "/%2F%2Fevil.example",
    ],
)
async def test_a_notification_link_must_stay_on_this_site(kernel: Any, make_tenant: Any, link: str) -> None:
    from inopsio.notifications import notify

    tenant = await make_tenant()
    async with kernel.db.session(tenant.id) as session:
        with pytest.raises(ValueError, match="path on this site"):
            await notify(kernel, session, "Phishing", link=link)
