"""The audit log API (filters, keyset pages, tenant isolation), its append-only table, tenant settings,
and the platform operator's actions recorded in the tenant's log."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from inopsio.identity import audit
from inopsio.identity.models import AuditEntry

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


async def seed(kernel: Any, tenant_id: UUID, entries: list[tuple[str, str, UUID | None]]) -> None:
    """Entries one minute apart from T0, in the given order: (action, outcome, actor)."""
    async with kernel.db.session(tenant_id) as session:
        for minute, (action, outcome, actor) in enumerate(entries):
            entry = await audit.record(session, tenant_id, action, actor_id=actor, outcome=outcome, n=minute)
            entry.occurred_at = T0 + dt.timedelta(minutes=minute)


async def read(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def numbers(page: dict[str, Any]) -> list[int]:
    return [item["details"]["n"] for item in page["items"]]


async def test_filters_select_by_action_prefix_actor_outcome_and_time(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    ada, bob = UUID(int=1), UUID(int=2)
    await seed(
        kernel,
        tenant.id,
        [
            ("auth.signin.succeeded", "success", ada),  # 0
            ("auth.signin.failed", "failure", bob),  # 1
            ("member.invited", "success", ada),  # 2
            ("auth.signin.failed", "failure", ada),  # 3
            ("authx.other.thing", "success", bob),  # 4: not under auth.*
            ("api_key.created", "success", bob),  # 5
        ],
    )
    window = {"since": T0.isoformat(), "until": (T0 + dt.timedelta(hours=1)).isoformat()}
    assert numbers(await read(client, admin, **window)) == [5, 4, 3, 2, 1, 0]
    assert numbers(await read(client, admin, action="auth.signin.failed")) == [3, 1]
    assert numbers(await read(client, admin, action="auth.*", **window)) == [3, 1, 0]
    assert numbers(await read(client, admin, actor_id=str(ada))) == [3, 2, 0]
    assert numbers(await read(client, admin, outcome="failure", actor_id=str(bob))) == [1]
    since, until = T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=4)
    assert numbers(await read(client, admin, since=since.isoformat(), until=until.isoformat())) == [3, 2]
    page = await read(client, admin, action="member.invited")
    (item,) = page["items"]
    assert item["actor_id"] == str(ada)
    assert dt.datetime.fromisoformat(item["occurred_at"]) == T0 + dt.timedelta(minutes=2)
    assert {"id", "action", "actor_label", "ip", "user_agent", "outcome", "details"} <= set(item)
    assert page["next_cursor"] is None


async def test_pages_walk_newest_first_without_gaps_or_repeats(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    await seed(kernel, tenant.id, [("member.invited", "success", None)] * 7)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"action": "member.invited", "limit": 3}
        if cursor:
            params["before"] = cursor
        page = await read(client, admin, **params)
        seen += numbers(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert pages == 3
    # A full last page has no next page either.
    first = await read(client, admin, action="member.invited", limit=7)
    assert len(first["items"]) == 7
    assert first["next_cursor"] is None


async def test_entries_with_the_same_time_page_by_id(client: Any, kernel: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    async with kernel.db.session(tenant.id) as session:
        for n in range(5):
            entry = await audit.record(session, tenant.id, "role.changed", n=n)
            entry.occurred_at = T0
    first = await read(client, admin, action="role.changed", limit=2)
    rest = await read(client, admin, action="role.changed", limit=10, before=first["next_cursor"])
    ids = [i["id"] for i in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 5
    assert ids == sorted(ids, reverse=True)


async def test_another_tenants_entries_are_never_visible(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    admin_a = await sign_in(a, "admin")
    marker = f"member.invited_{secrets.token_hex(3)}"
    await seed(kernel, b.id, [(marker, "success", None)] * 3)
    assert (await read(client, admin_a, action=marker))["items"] == []
    everything = await read(client, admin_a, limit=200)
    assert all(item["action"] != marker for item in everything["items"])
    # A cursor taken from tenant B's log pages A's log only.
    admin_b = await sign_in(b, "admin")
    cursor = (await read(client, admin_b, action=marker, limit=1))["next_cursor"]
    assert all(i["action"] != marker for i in (await read(client, admin_a, before=cursor, limit=200))["items"])
    # An admin of A using B's address is not a member there.
    assert (await client.get("/api/v1/audit", headers={**admin_a, "X-Tenant": b.slug})).status_code in (401, 403)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"before": "not-a-cursor"},
        {"before": "MjAzMC0wMS0wMXxub3QtYS11dWlk"},
        {"action": "auth.*.failed"},
        {"action": "'; DELETE FROM audit_log; --"},
        {"actor_id": "nobody"},
        {"since": "yesterday"},
        {"since": "2030-01-01T00:00:00"},
    ],
)
async def test_bad_audit_queries_get_400_problems(
    client: Any, make_tenant: Any, sign_in: Any, params: dict[str, Any]
) -> None:
    tenant = await make_tenant()
    response = await client.get("/api/v1/audit", params=params, headers=await sign_in(tenant, "admin"))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_roles_without_audit_read_get_403(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    for role in ("viewer", "member", "manager"):
        headers = await sign_in(tenant, role)
        response = await client.get("/api/v1/audit", headers=headers)
        assert response.status_code == 403
        assert response.json()["permission"] == "kernel.audit.read"
    assert (await client.get("/api/v1/audit", headers={"X-Tenant": tenant.slug})).status_code == 401


async def test_the_application_role_cannot_update_or_delete_audit_entries(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await seed(kernel, tenant.id, [("auth.signin.failed", "failure", None)])
    statements = [
        update(AuditEntry).values(outcome="success"),
        delete(AuditEntry),
        text("UPDATE audit_log SET action = 'nothing.happened.here'"),
        text("DELETE FROM audit_log"),
        text("TRUNCATE audit_log"),
    ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with kernel.db.session(tenant.id) as session:
                await session.execute(statement)
    async with kernel.db.session(tenant.id) as session:
        rows = (await session.execute(select(AuditEntry.action, AuditEntry.outcome))).all()
    assert ("auth.signin.failed", "failure") in rows


async def test_sign_in_failures_and_key_changes_reach_the_log(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    failed = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "wrong wrong wrong"},
        headers={"X-Tenant": tenant.slug, "User-Agent": "audit-test"},
    )
    assert failed.status_code == 401
    key = await client.post("/api/v1/api-keys", json={"name": "k", "permissions": ["sample.notes.read"]}, headers=admin)
    await client.delete(f"/api/v1/api-keys/{key.json()['id']}", headers=admin)
    (failure,) = (await read(client, admin, action="auth.signin.failed"))["items"]
    assert failure["outcome"] == "failure"
    assert failure["actor_label"] == "nobody@example.com"
    assert failure["user_agent"] == "audit-test"
    assert [i["action"] for i in (await read(client, admin, action="api_key.*"))["items"]] == [
        "api_key.revoked",
        "api_key.created",
    ]


async def test_admin_changes_tenant_settings_and_the_change_is_audited(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    current = await client.get("/api/v1/tenant/settings", headers=admin)
    assert current.status_code == 200, current.text
    assert current.json()["locale"] == "en"
    changed = await client.patch(
        "/api/v1/tenant/settings",
        json={
            "display_name": "Acme <b>GmbH</b>",
            "locale": "de_CH",
            "timezone": "Europe/Zurich",
            "currency": "CHF",
            "branding": {"color": "#1f6feb"},
        },
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["display_name"], body["locale"], body["timezone"], body["currency"]) == (
        "Acme <b>GmbH</b>",
        "de_CH",
        "Europe/Zurich",
        "CHF",
    )
    assert body["branding"]["color"] == "#1f6feb"
    public = (await client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})).json()
    assert public["name"] == "Acme <b>GmbH</b>"
    assert public["currency"] == "CHF"
    # Only what actually changed is recorded; the same patch again changes nothing and records nothing.
    again = await client.patch("/api/v1/tenant/settings", json={"locale": "de_CH", "currency": "EUR"}, headers=admin)
    assert again.status_code == 200
    entries = (await read(client, admin, action="tenant.settings_changed"))["items"]
    assert [e["details"]["fields"] for e in entries] == [
        ["currency"],
        ["display_name", "locale", "timezone", "currency", "branding"],
    ]
    assert entries[0]["actor_id"] is not None


@pytest.mark.parametrize(
    "patch",
    [
        {"timezone": "Mars/Olympus"},
        {"currency": "XXX1"},
        {"locale": "zz_ZZ"},
        {"branding": {"color": "red; background:url(javascript:alert(1))"}},
        {"branding": {"logo_url": "javascript:alert(1)"}},
        {"disabled_modules": ["no-such-module"]},
        {"nonsense": True},
        {"display_name": "x" * 201},
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    client: Any, make_tenant: Any, sign_in: Any, patch: dict[str, Any]
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    before = (await client.get("/api/v1/tenant/settings", headers=admin)).json()
    response = await client.patch("/api/v1/tenant/settings", json=patch, headers=admin)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/v1/tenant/settings", headers=admin)).json() == before


async def test_only_settings_admins_see_or_change_settings(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    for role in ("viewer", "member", "manager"):
        headers = await sign_in(tenant, role)
        assert (await client.get("/api/v1/tenant/settings", headers=headers)).status_code == 403
        assert (
            await client.patch("/api/v1/tenant/settings", json={"locale": "fr"}, headers=headers)
        ).status_code == 403


async def test_platform_operator_actions_appear_in_the_tenants_log(
    client: Any, make_tenant: Any, sign_in: Any, operator_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    base = f"/api/v1/platform/tenants/{tenant.id}"
    suspended = await client.post(f"{base}/suspend", json={"reason": "unpaid"}, headers=operator_headers)
    assert suspended.status_code == 200, suspended.text
    assert (await client.post(f"{base}/resume", headers=operator_headers)).status_code == 200
    patched = await client.patch(f"{base}/settings", json={"locale": "fr"}, headers=operator_headers)
    assert patched.status_code == 200
    entries = (await read(client, admin, action="tenant.*"))["items"]
    by_action = {e["action"]: e for e in entries}
    assert {"tenant.suspended", "tenant.resumed", "tenant.settings_changed"} <= set(by_action)
    assert by_action["tenant.suspended"]["details"]["reason"] == "unpaid"
    assert by_action["tenant.settings_changed"]["details"]["fields"] == ["locale"]
    for action in ("tenant.suspended", "tenant.resumed", "tenant.settings_changed"):
        assert by_action[action]["actor_label"].startswith("platform operator test-")
        assert by_action[action]["actor_id"] is None
