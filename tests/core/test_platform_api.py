"""The platform operator API: who gets in, and creating, listing, suspending and resuming tenants."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest

from inopsio.errors import PROBLEM_MEDIA_TYPE, problem_type
from inopsio.platform.auth import create_operator_token, revoke_operator_token

TENANTS = "/api/v1/platform/tenants"


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert body["type"] == problem_type(code)
    assert body["status"] == status
    return body  # type: ignore[no-any-return]


def unique_prefix() -> str:
    return f"p{secrets.token_hex(4)}"


async def create(client: Any, headers: dict[str, str], slug: str, name: str = "Tenant") -> dict[str, Any]:
    response = await client.post(TENANTS, json={"slug": slug, "name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# Who gets in -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer iop_not-a-real-token", "Bearer something-else", "Basic dXNlcjpwYXNz", "iop_no-scheme"],
    ids=["missing", "unknown", "not-an-operator-token", "basic", "no-scheme"],
)
async def test_the_platform_api_needs_an_operator_token(client: Any, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = await client.get(TENANTS, headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_operator_token_is_refused(client: Any, kernel: Any) -> None:
    name = f"leaving-{secrets.token_hex(3)}"
    token = await create_operator_token(kernel.db, name)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(TENANTS, headers=headers)).status_code == 200

    assert await revoke_operator_token(kernel.db, name) == 1

    body = assert_problem(await client.get(TENANTS, headers=headers), 401, "unauthorized")
    assert "revoked" in body["detail"]


async def test_a_tenant_host_or_header_does_not_open_the_platform_api(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()

    for headers in ({"Host": f"{tenant.slug}.localhost"}, {"X-Tenant": tenant.slug}):
        assert_problem(await client.get(TENANTS, headers=headers), 401, "unauthorized")
        assert_problem(
            await client.post(TENANTS, json={"slug": unique_prefix(), "name": "x"}, headers=headers),
            401,
            "unauthorized",
        )


async def test_an_operator_token_works_whichever_host_it_is_sent_to(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    await client.post(f"{TENANTS}/{tenant.id}/suspend", headers=operator_headers)

    # Even on the address of a suspended tenant: the operator must be able to resume it.
    response = await client.post(
        f"{TENANTS}/{tenant.id}/resume", headers={**operator_headers, "Host": f"{tenant.slug}.localhost"}
    )

    assert response.status_code == 200
    assert response.json()["status"] == "active"


# Creating --------------------------------------------------------------------------------------


async def test_an_operator_creates_a_tenant(client: Any, operator_headers: dict[str, str]) -> None:
    slug = unique_prefix()

    response = await client.post(
        TENANTS, json={"slug": slug, "name": "Acme Ltd", "settings": {"currency": "GBP"}}, headers=operator_headers
    )

    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"])
    assert (body["slug"], body["name"], body["status"]) == (slug, "Acme Ltd", "active")
    assert body["settings"]["currency"] == "GBP"
    assert body["quotas"] == {}
    assert body["created_at"]
    assert body["updated_at"]
    assert (await client.get("/api/v1/tenant", headers={"Host": f"{slug}.localhost"})).json()["name"] == "Acme Ltd"


@pytest.mark.parametrize("slug", ["Acme", "-acme", "acme-", "ac_me", "a" * 64, ""])
async def test_a_tenant_with_a_bad_slug_is_refused(client: Any, operator_headers: dict[str, str], slug: str) -> None:
    response = await client.post(TENANTS, json={"slug": slug, "name": "Acme"}, headers=operator_headers)

    body = assert_problem(response, 400, "validation-error")
    assert [e["pointer"] for e in body["errors"]] == ["/slug"]


@pytest.mark.parametrize(
    "body",
    [{"slug": "fine-slug"}, {"slug": "fine-slug", "name": ""}, {"slug": "fine-slug", "name": "x", "colour": "red"}],
    ids=["no-name", "empty-name", "unknown-field"],
)
async def test_an_invalid_tenant_body_is_a_400_problem(
    client: Any, operator_headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert_problem(await client.post(TENANTS, json=body, headers=operator_headers), 400, "validation-error")


# Listing ---------------------------------------------------------------------------------------


async def test_tenants_are_listed_by_slug_with_search(client: Any, operator_headers: dict[str, str]) -> None:
    prefix = unique_prefix()
    for suffix, name in (("c", "Gamma"), ("a", "Alpha"), ("b", "Beta")):
        await create(client, operator_headers, f"{prefix}-{suffix}", f"{name} {prefix}")

    page = (await client.get(TENANTS, params={"search": prefix}, headers=operator_headers)).json()

    assert [t["slug"] for t in page["items"]] == [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    assert page["total"] == 3
    assert page.get("next_after") is None
    by_name = (await client.get(TENANTS, params={"search": f"beta {prefix}"}, headers=operator_headers)).json()
    assert [t["slug"] for t in by_name["items"]] == [f"{prefix}-b"]
    # LIKE wildcards in the search are taken literally: as a wildcard, "%" would match all three.
    for wildcard in (f"{prefix}-%", f"{prefix}-_"):
        found = (await client.get(TENANTS, params={"search": wildcard}, headers=operator_headers)).json()
        assert found["total"] == 0, wildcard


async def test_tenants_are_filtered_by_status(client: Any, operator_headers: dict[str, str]) -> None:
    prefix = unique_prefix()
    active = await create(client, operator_headers, f"{prefix}-on")
    suspended = await create(client, operator_headers, f"{prefix}-off")
    await client.post(f"{TENANTS}/{suspended['id']}/suspend", headers=operator_headers)

    for status, expected in (("active", active), ("suspended", suspended)):
        page = (await client.get(TENANTS, params={"search": prefix, "status": status}, headers=operator_headers)).json()
        assert [t["id"] for t in page["items"]] == [expected["id"]]
        assert page["total"] == 1

    bad = await client.get(TENANTS, params={"status": "deleted"}, headers=operator_headers)
    assert_problem(bad, 400, "validation-error")


async def test_tenants_are_paged_by_keyset(client: Any, operator_headers: dict[str, str]) -> None:
    prefix = unique_prefix()
    slugs = [f"{prefix}-{i}" for i in range(5)]
    for slug in reversed(slugs):
        await create(client, operator_headers, slug)

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"search": prefix, "limit": 2, **({"after": after} if after else {})}
        page = (await client.get(TENANTS, params=params, headers=operator_headers)).json()
        pages += 1
        assert page["total"] == 5
        seen += [t["slug"] for t in page["items"]]
        after = page.get("next_after")
        if after is None:
            break
        assert after == seen[-1]

    assert seen == slugs
    assert pages == 3


async def test_a_full_last_page_says_there_is_no_next_page(client: Any, operator_headers: dict[str, str]) -> None:
    prefix = unique_prefix()
    for i in range(4):
        await create(client, operator_headers, f"{prefix}-{i}")

    first = (await client.get(TENANTS, params={"search": prefix, "limit": 2}, headers=operator_headers)).json()
    last = (
        await client.get(
            TENANTS, params={"search": prefix, "limit": 2, "after": first["next_after"]}, headers=operator_headers
        )
    ).json()

    assert [t["slug"] for t in last["items"]] == [f"{prefix}-2", f"{prefix}-3"]
    assert last.get("next_after") is None


@pytest.mark.parametrize("limit", [0, 501, "many"])
async def test_a_bad_page_size_is_refused(client: Any, operator_headers: dict[str, str], limit: Any) -> None:
    response = await client.get(TENANTS, params={"limit": limit}, headers=operator_headers)

    assert_problem(response, 400, "validation-error")


# One tenant ------------------------------------------------------------------------------------


async def test_an_operator_reads_one_tenant(client: Any, make_tenant: Any, operator_headers: dict[str, str]) -> None:
    tenant = await make_tenant(name="Readable")

    response = await client.get(f"{TENANTS}/{tenant.id}", headers=operator_headers)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["slug"], body["name"], body["status"]) == (
        str(tenant.id),
        tenant.slug,
        "Readable",
        "active",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("POST", "/suspend"),
        ("POST", "/resume"),
        ("PATCH", "/settings"),
        ("GET", "/quotas"),
        ("PATCH", "/quotas"),
        ("GET", "/usage"),
    ],
)
async def test_an_unknown_tenant_id_is_a_404_problem(
    client: Any, operator_headers: dict[str, str], method: str, path: str
) -> None:
    kwargs = {"json": {}} if method == "PATCH" else {}

    response = await client.request(method, f"{TENANTS}/{uuid.uuid4()}{path}", headers=operator_headers, **kwargs)

    assert_problem(response, 404, "tenant-not-found")


async def test_a_malformed_tenant_id_is_not_found(client: Any, operator_headers: dict[str, str]) -> None:
    response = await client.get(f"{TENANTS}/not-a-uuid", headers=operator_headers)

    assert response.status_code in (400, 404)
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)


# Suspending and resuming -----------------------------------------------------------------------


async def test_suspend_and_resume_round_trip_with_a_reason(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()

    suspended = await client.post(
        f"{TENANTS}/{tenant.id}/suspend", json={"reason": "payment overdue"}, headers=operator_headers
    )
    assert suspended.status_code == 200
    assert (suspended.json()["status"], suspended.json()["suspended_reason"]) == ("suspended", "payment overdue")
    stored = (await client.get(f"{TENANTS}/{tenant.id}", headers=operator_headers)).json()
    assert (stored["status"], stored["suspended_reason"]) == ("suspended", "payment overdue")
    assert (await client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})).status_code == 403

    resumed = await client.post(f"{TENANTS}/{tenant.id}/resume", headers=operator_headers)
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "active"
    assert resumed.json().get("suspended_reason") is None
    stored = (await client.get(f"{TENANTS}/{tenant.id}", headers=operator_headers)).json()
    assert (stored["status"], stored.get("suspended_reason")) == ("active", None)
    assert (await client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})).status_code == 200


async def test_a_tenant_can_be_suspended_without_a_reason(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()

    response = await client.post(f"{TENANTS}/{tenant.id}/suspend", headers=operator_headers)

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    assert response.json().get("suspended_reason") is None


async def test_a_too_long_suspension_reason_is_refused(
    client: Any, make_tenant: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()

    response = await client.post(f"{TENANTS}/{tenant.id}/suspend", json={"reason": "x" * 501}, headers=operator_headers)

    assert_problem(response, 400, "validation-error")
    assert (await client.get(f"{TENANTS}/{tenant.id}", headers=operator_headers)).json()["status"] == "active"
