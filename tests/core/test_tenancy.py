"""Tenancy: which tenant a request is for, suspension, per-tenant modules and settings, isolation."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy import update as sa_update

from inopsio.errors import PROBLEM_MEDIA_TYPE, Problem, problem_type
from inopsio.tenancy.resolution import check_claim, slug_from_host
from inopsio.tenancy.schemas import RESERVED_SLUGS, SLUG_PATTERN, TenantCreate
from inopsio_sample.models import Note

NOTES = "/api/v1/sample/notes"


def tenant_headers(slug: str) -> dict[str, str]:
    return {"X-Tenant": slug}


def host_headers(slug: str) -> dict[str, str]:
    return {"Host": f"{slug}.localhost"}


def on_host(signed_in: dict[str, str]) -> dict[str, str]:
    """A signed-in member's headers naming the tenant by its ``Host`` subdomain instead of ``X-Tenant``."""
    return {**host_headers(signed_in["X-Tenant"]), "Authorization": signed_in["Authorization"]}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert body["type"] == problem_type(code)
    assert body["status"] == status
    assert body["detail"]
    return body  # type: ignore[no-any-return]


async def note_titles(client: Any, headers: dict[str, str]) -> list[str]:
    response = await client.get(NOTES, headers=headers)
    assert response.status_code == 200, response.text
    return [n["title"] for n in response.json()]


# Resolution -------------------------------------------------------------------------------------


async def test_tenant_is_resolved_from_the_host_subdomain(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant(name="Acme")

    response = await client.get("/api/v1/tenant", headers=host_headers(tenant.slug))

    assert response.status_code == 200
    assert response.json()["id"] == str(tenant.id)
    assert response.json()["slug"] == tenant.slug


async def test_tenant_is_resolved_from_the_x_tenant_header(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()

    response = await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))

    assert response.status_code == 200
    assert response.json()["id"] == str(tenant.id)


async def test_host_and_x_tenant_naming_different_tenants_is_refused(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()

    response = await client.get("/api/v1/tenant", headers={**host_headers(a.slug), **tenant_headers(b.slug)})

    body = assert_problem(response, 400, "tenant-mismatch")
    assert a.slug in body["detail"]
    assert b.slug in body["detail"]


async def test_host_and_x_tenant_naming_the_same_tenant_is_fine(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()

    response = await client.get("/api/v1/tenant", headers={**host_headers(tenant.slug), **tenant_headers(tenant.slug)})

    assert response.status_code == 200


async def test_two_x_tenant_headers_are_a_400_problem_whichever_tenants_they_name(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    b_member = await sign_in(b)

    for slugs in ((a.slug, b.slug), (b.slug, a.slug), (b.slug, b.slug)):
        headers = [("X-Tenant", slugs[0]), ("X-Tenant", slugs[1]), ("Authorization", b_member["Authorization"])]
        response = await client.get(NOTES, headers=headers)

        body = assert_problem(response, 400, "duplicate-header")
        assert "X-Tenant" in body["detail"]
    # One is fine.
    assert (await client.get(NOTES, headers=b_member)).status_code == 200


async def test_two_host_headers_are_a_400_problem(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()

    response = await client.get(
        "/api/v1/tenant", headers=[("Host", f"{a.slug}.localhost"), ("Host", f"{b.slug}.localhost")]
    )

    body = assert_problem(response, 400, "duplicate-header")
    assert "Host" in body["detail"]


@pytest.mark.parametrize("headers", [host_headers("no-such-tenant"), tenant_headers("no-such-tenant")])
async def test_unknown_tenant_is_a_404_problem(client: Any, headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/tenant", headers=headers)

    body = assert_problem(response, 404, "tenant-not-found")
    assert "no-such-tenant" in body["detail"]


async def test_tenant_endpoint_without_any_tenant_asks_for_one(client: Any) -> None:
    response = await client.get("/api/v1/tenant")

    assert_problem(response, 400, "tenant-required")


async def test_token_claiming_another_tenant_is_refused(make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()

    with pytest.raises(Problem) as refused:
        check_claim(a, str(b.id))

    assert refused.value.status_code == 403
    assert refused.value.code == "tenant-mismatch"
    # A claim of the same tenant, or no claim at all, passes.
    check_claim(a, str(a.id))
    check_claim(a, None)


async def test_a_created_tenant_is_reachable_at_once_even_after_its_address_was_asked_for(
    client: Any, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production caches tenants (and unknown slugs) per process; creating one must drop the cached miss.
    monkeypatch.setattr(kernel.tenants.directory, "ttl", 60.0)
    slug = f"late-{uuid.uuid4().hex[:8]}"
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(slug))).status_code == 404

    await make_tenant(slug=slug)

    assert (await client.get("/api/v1/tenant", headers=tenant_headers(slug))).status_code == 200


@given(
    slug=st.from_regex(SLUG_PATTERN, fullmatch=True),
    port=st.integers(min_value=1, max_value=65535),
)
def test_slug_from_host_reads_the_subdomain_of_the_base_domain(slug: str, port: int) -> None:
    assert slug_from_host(f"{slug}.localhost:{port}", "localhost") == slug
    assert slug_from_host(f"{slug}.localhost", "localhost") == slug
    assert slug_from_host(f"{slug}.example.com:{port}", "example.com") == slug


@given(
    labels=st.lists(st.from_regex(SLUG_PATTERN, fullmatch=True), min_size=2, max_size=4),
    port=st.integers(min_value=1, max_value=65535),
)
def test_slug_from_host_refuses_hosts_with_extra_labels(labels: list[str], port: int) -> None:
    assert slug_from_host(".".join(labels) + f".localhost:{port}", "localhost") is None
    assert slug_from_host(".".join(labels) + ".example.com", "example.com") is None


@given(address=st.ip_addresses(), port=st.integers(min_value=1, max_value=65535))
def test_slug_from_host_refuses_ip_addresses(address: Any, port: int) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)
    assert slug_from_host(host, "localhost") is None
    assert slug_from_host(f"{host}:{port}", "localhost") is None


@given(port=st.integers(min_value=1, max_value=65535))
def test_slug_from_host_refuses_the_bare_base_domain(port: int) -> None:
    assert slug_from_host("localhost", "localhost") is None
    assert slug_from_host(f"localhost:{port}", "localhost") is None
    assert slug_from_host(".localhost", "localhost") is None
    assert slug_from_host(f"example.com:{port}", "example.com") is None
    assert slug_from_host("otherlocalhost", "localhost") is None


# Suspension ------------------------------------------------------------------------------------


async def test_suspended_tenant_keeps_data_but_refuses_requests(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    member = await sign_in(tenant, role="owner")
    created = await client.post(NOTES, json={"title": "Keep me"}, headers=member)
    assert created.status_code == 201

    suspended = await client.post(
        f"/api/v1/platform/tenants/{tenant.id}/suspend", json={"reason": "unpaid invoice"}, headers=operator_headers
    )
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"

    for method, path, headers in [
        ("GET", "/api/v1/tenant", tenant_headers(tenant.slug)),
        ("GET", "/api/v1/tenant", host_headers(tenant.slug)),
        ("GET", "/api/v1/tenant", member),
        ("GET", NOTES, tenant_headers(tenant.slug)),
        ("GET", NOTES, member),
        ("GET", f"{NOTES}/{created.json()['id']}", on_host(member)),
        ("POST", NOTES, member),
        ("DELETE", f"{NOTES}/{created.json()['id']}", member),
    ]:
        kwargs = {"json": {"title": "Not while suspended"}} if method == "POST" else {}
        response = await client.request(method, path, headers=headers, **kwargs)
        body = assert_problem(response, 403, "tenant-suspended")
        assert "suspended" in body["detail"]
    # Nor does the token alone, naming no address, reach the tenant: it is resolved from the token's claim.
    token_only = await client.get(NOTES, headers={"Authorization": member["Authorization"]})
    assert token_only.status_code == 403, token_only.text
    assert token_only.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)

    async with kernel.db.session(tenant.id) as session:
        titles = sorted((await session.execute(select(Note.title))).scalars())
    assert titles == ["Keep me", "Welcome"]

    resumed = await client.post(f"/api/v1/platform/tenants/{tenant.id}/resume", headers=operator_headers)
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "active"
    assert resumed.json().get("suspended_reason") is None

    assert (await client.get("/api/v1/tenant", headers=host_headers(tenant.slug))).status_code == 200
    assert sorted(await note_titles(client, member)) == ["Keep me", "Welcome"]
    assert (await client.get(f"{NOTES}/{created.json()['id']}", headers=on_host(member))).status_code == 200
    assert (await client.get(NOTES, headers={"Authorization": member["Authorization"]})).status_code == 200


async def test_suspension_takes_effect_at_once_even_with_a_tenant_cache(
    client: Any, kernel: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel.tenants.directory, "ttl", 60.0)
    tenant = await make_tenant()
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200

    await kernel.tenants.suspend(tenant.id, "abuse")
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 403

    await kernel.tenants.resume(tenant.id)
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).status_code == 200


# Modules switched on and off per tenant --------------------------------------------------------


async def test_a_tenant_that_switches_a_module_off_no_longer_reaches_it(
    client: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    a, b = await make_tenant(), await make_tenant()
    member_a, member_b = await sign_in(a, role="owner"), await sign_in(b, role="owner")
    created = await client.post(NOTES, json={"title": "A's"}, headers=member_a)
    assert created.status_code == 201, created.text
    note = created.json()

    response = await client.patch(
        f"/api/v1/platform/tenants/{a.id}/settings", json={"disabled_modules": ["sample"]}, headers=operator_headers
    )
    assert response.status_code == 200
    assert response.json()["settings"]["disabled_modules"] == ["sample"]

    assert_problem(await client.get(NOTES, headers=member_a), 404, "not-found")
    assert_problem(await client.get(f"{NOTES}/{note['id']}", headers=member_a), 404, "not-found")
    assert_problem(await client.post(NOTES, json={"title": "x"}, headers=on_host(member_a)), 404, "not-found")
    # The kernel's own routes stay, and another tenant still has the module.
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(a.slug))).status_code == 200
    assert (await client.get(NOTES, headers=member_b)).status_code == 200

    switched_on = await client.patch(
        f"/api/v1/platform/tenants/{a.id}/settings", json={"disabled_modules": []}, headers=operator_headers
    )
    assert switched_on.status_code == 200
    assert "A's" in await note_titles(client, member_a)


async def test_a_module_switched_off_at_creation_does_not_seed_the_tenant(
    client: Any, kernel: Any, operator_headers: dict[str, str]
) -> None:
    slug = f"nosample-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/api/v1/platform/tenants",
        json={"slug": slug, "name": "No sample", "settings": {"disabled_modules": ["sample"]}},
        headers=operator_headers,
    )
    assert response.status_code == 201, response.text
    from_api = response.json()["id"]
    from_kernel = await kernel.tenants.create(
        msgspec.convert(
            {"slug": f"{slug}-k", "name": "No sample", "settings": {"disabled_modules": ["sample"]}}, TenantCreate
        )
    )

    for tenant_id in (uuid.UUID(from_api), from_kernel.id):
        async with kernel.db.session(tenant_id) as session:
            assert (await session.execute(select(func.count()).select_from(Note))).scalar_one() == 0


async def test_switching_off_a_module_that_is_not_installed_is_refused(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()

    response = await client.patch(
        f"/api/v1/platform/tenants/{tenant.id}/settings", json={"disabled_modules": ["nope"]}, headers=operator_headers
    )

    body = assert_problem(response, 422, "unknown-module")
    assert "nope" in body["detail"]


# Tenant settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"locale": "xx_YY"}, "locale"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"currency": "XYZ"}, "currency"),
        ({"branding": {"color": "red"}}, "color"),
        ({"branding": {"logo_url": "javascript:alert(1)"}}, "logo_url"),
        ({"display_name": "x" * 201}, "display_name"),
    ],
)
async def test_invalid_tenant_settings_are_refused_naming_the_field(
    client: Any, make_tenant: Any, operator_headers: dict[str, str], patch: dict[str, Any], field: str
) -> None:
    tenant = await make_tenant()

    response = await client.patch(
        f"/api/v1/platform/tenants/{tenant.id}/settings", json=patch, headers=operator_headers
    )

    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert field in response.text
    # Nothing was stored.
    stored = (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).json()
    assert stored["locale"] == tenant.settings.locale
    assert stored["timezone"] == tenant.settings.timezone
    assert stored["currency"] == tenant.settings.currency
    assert stored["branding"] == {"logo_url": None, "color": None}


async def test_invalid_settings_at_creation_are_refused_naming_the_field(
    client: Any, operator_headers: dict[str, str]
) -> None:
    slug = f"badtz-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/api/v1/platform/tenants",
        json={"slug": slug, "name": "Bad", "settings": {"timezone": "Nowhere/Land"}},
        headers=operator_headers,
    )

    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert "timezone" in response.text
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(slug))).status_code == 404


async def test_good_tenant_settings_are_stored_and_returned(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant(name="Acme")

    response = await client.patch(
        f"/api/v1/platform/tenants/{tenant.id}/settings",
        json={
            "display_name": "Acme Schweiz",
            "locale": "de_CH",
            "timezone": "Europe/Zurich",
            "currency": "CHF",
            "branding": {"logo_url": "https://cdn.example.com/acme.png", "color": "#1f6feb"},
        },
        headers=operator_headers,
    )
    assert response.status_code == 200, response.text

    public = (await client.get("/api/v1/tenant", headers=host_headers(tenant.slug))).json()
    assert public == {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": "Acme Schweiz",
        "locale": "de_CH",
        "timezone": "Europe/Zurich",
        "currency": "CHF",
        "branding": {"logo_url": "https://cdn.example.com/acme.png", "color": "#1f6feb"},
    }

    # A partial update changes only the fields it names.
    response = await client.patch(
        f"/api/v1/platform/tenants/{tenant.id}/settings", json={"currency": "EUR"}, headers=operator_headers
    )
    assert response.status_code == 200
    public = (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).json()
    assert (public["currency"], public["timezone"], public["name"]) == ("EUR", "Europe/Zurich", "Acme Schweiz")


OFF_SITE_LOGOS = [
    "//evil.example/logo.png",
    "/\\evil.example/logo.png",
    "\\\\evil.example/logo.png",
    "/\t/evil.example/logo.png",
    "/\n/evil.example/logo.png",
    " //evil.example/logo.png",
    "/%5cevil.example/logo.png",
    "/%2F%2Fevil.example/logo.png",
    "https://",
    "http://evil.example/logo.png",
    "data:image/svg+xml,<svg/>",
]


@pytest.mark.parametrize("logo_url", OFF_SITE_LOGOS)
async def test_a_logo_address_a_browser_would_resolve_off_site_is_a_422_naming_the_field(
    client: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str], logo_url: str
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")

    response = await client.patch("/api/v1/tenant/settings", json={"branding": {"logo_url": logo_url}}, headers=owner)

    body = assert_problem(response, 422, "invalid-settings")
    assert [e["pointer"] for e in body["errors"]] == ["/branding/logo_url"]
    operator = await client.patch(
        f"/api/v1/platform/tenants/{tenant.id}/settings",
        json={"branding": {"logo_url": logo_url}},
        headers=operator_headers,
    )
    assert assert_problem(operator, 422, "invalid-settings")["errors"][0]["pointer"] == "/branding/logo_url"
    created = await client.post(
        "/api/v1/platform/tenants",
        json={"slug": f"logo-{uuid.uuid4().hex[:8]}", "name": "Logo", "settings": {"branding": {"logo_url": logo_url}}},
        headers=operator_headers,
    )
    assert assert_problem(created, 422, "invalid-settings")["errors"][0]["pointer"] == "/settings/branding/logo_url"
    stored = (await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))).json()
    assert stored["branding"]["logo_url"] is None


@pytest.mark.parametrize(
    "logo_url", ["/branding/0190c2a4-logo", "/static/acme.png?v=2", "https://cdn.example.com/a.png"]
)
async def test_a_logo_on_this_site_or_on_an_https_host_is_stored(
    client: Any, make_tenant: Any, sign_in: Any, logo_url: str
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")

    response = await client.patch("/api/v1/tenant/settings", json={"branding": {"logo_url": logo_url}}, headers=owner)

    assert response.status_code == 200, response.text
    assert response.json()["branding"]["logo_url"] == logo_url


async def test_an_off_site_logo_stored_before_the_check_is_never_shown_and_the_tenant_still_loads(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    from inopsio.tenancy.models import Tenant

    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    settings = {**msgspec.to_builtins(tenant.settings), "branding": {"logo_url": "/\\evil.example/logo.png"}}
    async with kernel.db.session(None) as session:
        await session.execute(sa_update(Tenant).where(Tenant.id == tenant.id).values(settings=settings))
    await kernel.tenants.announce_change(tenant.slug)

    public = await client.get("/api/v1/tenant", headers=tenant_headers(tenant.slug))
    assert public.status_code == 200, public.text
    assert public.json()["branding"]["logo_url"] is None
    for path in ("/", "/admin/settings"):
        page = await client.get(path, headers={**owner, "Accept": "text/html"})
        assert page.status_code == 200, page.text
        assert "evil.example" not in page.text.split('id="branding_logo"')[0]
        assert '<img src="/\\evil.example' not in page.text
    # The admin still sees what is stored (to replace it), and other settings can still change.
    assert (await client.get("/api/v1/tenant/settings", headers=owner)).json()["branding"]["logo_url"] == (
        "/\\evil.example/logo.png"
    )
    changed = await client.patch("/api/v1/tenant/settings", json={"timezone": "Europe/Paris"}, headers=owner)
    assert changed.status_code == 200, changed.text


# Slugs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(RESERVED_SLUGS)[:5])
async def test_reserved_slugs_are_refused(client: Any, operator_headers: dict[str, str], slug: str) -> None:
    response = await client.post(
        "/api/v1/platform/tenants", json={"slug": slug, "name": "Grab"}, headers=operator_headers
    )

    body = assert_problem(response, 422, "slug-reserved")
    assert body["errors"] == [{"pointer": "/slug", "detail": "reserved"}]


async def test_a_taken_slug_is_refused(client: Any, make_tenant: Any, operator_headers: dict[str, str]) -> None:
    existing = await make_tenant(name="First")

    response = await client.post(
        "/api/v1/platform/tenants", json={"slug": existing.slug, "name": "Second"}, headers=operator_headers
    )

    body = assert_problem(response, 409, "slug-taken")
    assert body["errors"][0]["pointer"] == "/slug"
    assert (await client.get("/api/v1/tenant", headers=tenant_headers(existing.slug))).json()["name"] == "First"


# Seeding and isolation -------------------------------------------------------------------------


async def test_plugins_seed_a_new_tenant_in_the_same_transaction(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant(name="Seeded")

    async with kernel.db.session(tenant.id) as session:
        notes = (await session.execute(select(Note))).scalars().all()
        note_xmin = (
            await session.execute(text("SELECT xmin::text FROM sample_notes WHERE id = :id"), {"id": notes[0].id})
        ).scalar_one()
        tenant_xmin = (
            await session.execute(text("SELECT xmin::text FROM tenants WHERE id = :id"), {"id": tenant.id})
        ).scalar_one()

    assert [(n.title, n.body) for n in notes] == [("Welcome", "First note of Seeded")]
    assert note_xmin == tenant_xmin  # written by the transaction that created the tenant


async def test_one_tenants_notes_are_never_listed_for_another(client: Any, make_tenant: Any, sign_in: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    member_a, member_b = await sign_in(a, role="member"), await sign_in(b, role="member")
    assert (await client.post(NOTES, json={"title": "A secret"}, headers=member_a)).status_code == 201
    assert (await client.post(NOTES, json={"title": "B public"}, headers=member_b)).status_code == 201

    assert sorted(await note_titles(client, member_a)) == ["A secret", "Welcome"]
    assert sorted(await note_titles(client, member_b)) == ["B public", "Welcome"]
    assert sorted(await note_titles(client, on_host(member_b))) == ["B public", "Welcome"]


async def test_another_tenants_note_id_looks_exactly_like_a_missing_one(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    # B's member is an owner: allowed to read and delete notes, so only isolation can stop them.
    member_a, member_b = await sign_in(a, role="owner"), await sign_in(b, role="owner")
    created = await client.post(NOTES, json={"title": "A secret"}, headers=member_a)
    assert created.status_code == 201, created.text
    note_id = created.json()["id"]
    assert (await client.get(f"{NOTES}/{note_id}", headers=member_a)).status_code == 200

    foreign = await client.get(f"{NOTES}/{note_id}", headers=member_b)
    missing = await client.get(f"{NOTES}/{uuid.uuid4()}", headers=member_b)

    assert foreign.status_code == missing.status_code == 404

    def comparable(response: Any) -> dict[str, Any]:
        return {k: v for k, v in response.json().items() if k != "instance"}

    assert comparable(foreign) == comparable(missing)
    assert foreign.headers["content-type"] == missing.headers["content-type"]
    # Nor can B delete it.
    assert_problem(await client.delete(f"{NOTES}/{note_id}", headers=member_b), 404, "not-found")
    assert_problem(await client.delete(f"{NOTES}/{note_id}", headers=on_host(member_b)), 404, "not-found")
    assert (await client.get(f"{NOTES}/{note_id}", headers=member_a)).status_code == 200


@pytest.mark.parametrize("address", ["x-tenant", "host"])
async def test_a_members_token_on_another_tenants_address_is_refused(
    client: Any, make_tenant: Any, sign_in: Any, address: str
) -> None:
    a, b = await make_tenant(), await make_tenant()
    member_a = await sign_in(a, role="owner")
    created = await client.post(NOTES, json={"title": "A secret"}, headers=member_a)
    assert created.status_code == 201, created.text
    b_address = tenant_headers(b.slug) if address == "x-tenant" else host_headers(b.slug)
    on_b = {**b_address, "Authorization": member_a["Authorization"]}

    for method, path in [("GET", NOTES), ("GET", f"{NOTES}/{created.json()['id']}"), ("POST", NOTES)]:
        kwargs = {"json": {"title": "Planted in B"}} if method == "POST" else {}
        response = await client.request(method, path, headers=on_b, **kwargs)
        assert_problem(response, 403, "tenant-mismatch")

    member_b = await sign_in(b, role="owner")
    assert sorted(await note_titles(client, member_b)) == ["Welcome"]


async def test_notes_without_signing_in_are_a_401_problem(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    member = await sign_in(tenant, role="owner")
    created = await client.post(NOTES, json={"title": "Members only"}, headers=member)
    assert created.status_code == 201, created.text
    note_id = created.json()["id"]

    for method, path, headers in [
        ("GET", NOTES, tenant_headers(tenant.slug)),
        ("GET", f"{NOTES}/{note_id}", host_headers(tenant.slug)),
        ("POST", NOTES, tenant_headers(tenant.slug)),
        ("DELETE", f"{NOTES}/{note_id}", tenant_headers(tenant.slug)),
    ]:
        kwargs = {"json": {"title": "Anonymous"}} if method == "POST" else {}
        response = await client.request(method, path, headers=headers, **kwargs)
        assert_problem(response, 401, "authentication-required")
        assert response.headers["www-authenticate"].lower().startswith("bearer")

    assert sorted(await note_titles(client, member)) == ["Members only", "Welcome"]


async def test_an_orm_session_of_one_tenant_sees_none_of_anothers_rows(kernel: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    async with kernel.db.session(a.id) as session:
        session.add(Note(title="A only"))
    async with kernel.db.session(a.id) as session:
        a_ids = set((await session.execute(select(Note.id))).scalars())
    assert len(a_ids) == 2

    async with kernel.db.session(b.id) as session:
        everything = (await session.execute(select(Note))).scalars().all()
        asked_for_a = (await session.execute(select(Note).where(Note.tenant_id == a.id))).scalars().all()
        by_key = [await session.get(Note, (a.id, note_id)) for note_id in a_ids]

    assert {n.tenant_id for n in everything} == {b.id}
    assert not {n.id for n in everything} & a_ids
    assert asked_for_a == []
    assert by_key == [None, None]
