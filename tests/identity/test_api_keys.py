"""API keys: scoped to the creator's permissions, shown once, stored hashed, revoked everywhere at once;
at every request a key does only what it lists and its owner may do now, and can be handed to another member."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
import time
from typing import Any

from sqlalchemy import select

from inopsio.identity.authentication import API_KEY_CACHE_SECONDS, api_key_cache_key
from inopsio.identity.models import ApiKey, AuditEntry

NOTES = "/api/v1/sample/notes/"


async def create_key(client: Any, headers: dict[str, str], permissions: list[str], **fields: Any) -> Any:
    return await client.post(
        "/api/v1/api-keys",
        json={"name": fields.pop("name", "integration"), "permissions": permissions, **fields},
        headers=headers,
    )


async def new_key(client: Any, headers: dict[str, str], permissions: list[str], **fields: Any) -> dict[str, Any]:
    response = await create_key(client, headers, permissions, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def key_headers(key: str, slug: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Tenant": slug}


async def audit_actions(kernel: Any, tenant_id: Any) -> list[AuditEntry]:
    async with kernel.db.session(tenant_id) as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.occurred_at))).scalars())


async def test_key_does_exactly_what_it_was_given(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await new_key(client, admin, ["sample.notes.read"])
    assert re.fullmatch(r"iok_[0-9a-f]{16}_[A-Za-z0-9_-]{40,}", created["key"])
    assert created["key"].startswith(f"iok_{created['prefix']}_")
    headers = key_headers(created["key"], tenant.slug)
    listed = await client.get(NOTES, headers=headers)
    assert listed.status_code == 200, listed.text
    assert [n["title"] for n in listed.json()] == ["Welcome"]
    write = await client.post(NOTES, json={"title": "from a key"}, headers=headers)
    assert write.status_code == 403
    assert write.json()["permission"] == "sample.notes.write"


async def test_key_is_stored_only_as_its_sha256_digest(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    created = await new_key(client, await sign_in(tenant, "admin"), ["sample.notes.read"])
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(ApiKey).where(ApiKey.prefix == created["prefix"]))).scalar_one()
    assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
    secret = created["key"].split(f"{created['prefix']}_", 1)[1]  # all after the prefix (it may hold "_")
    assert all(secret not in str(value) for value in vars(row).values())


async def test_key_cannot_carry_a_permission_its_creator_lacks(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    role = await client.post(
        "/api/v1/roles",
        json={"name": "integrator", "permissions": ["kernel.api_keys.write", "sample.notes.read"]},
        headers=owner,
    )
    assert role.status_code == 201, role.text
    integrator = await sign_in(tenant, "integrator")
    refused = await create_key(client, integrator, ["sample.notes.read", "sample.notes.write"])
    assert refused.status_code == 422
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("permission-not-held")
    assert problem["permissions"] == ["sample.notes.write"]
    assert "sample.notes.write" in problem["detail"]
    unknown = await create_key(client, integrator, ["nope.things.read"])
    assert unknown.status_code == 422
    assert unknown.json()["permissions"] == ["nope.things.read"]
    assert (await create_key(client, integrator, ["sample.notes.read"])).status_code == 201
    # Nothing was stored by the refused attempts.
    assert len((await client.get("/api/v1/api-keys", headers=integrator)).json()) == 1


async def test_bad_key_requests_get_problem_documents(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    cases = [
        {"name": "x", "permissions": []},
        {"name": "", "permissions": ["sample.notes.read"]},
        {"name": "   ", "permissions": ["sample.notes.read"]},
        {"name": "x" * 201, "permissions": ["sample.notes.read"]},
        {"name": "x", "permissions": ["sample.notes.read"], "expires_at": past},
        {"name": "x", "permissions": ["sample.notes.read"], "expires_at": "2999-01-01T00:00:00"},
        {"name": "x", "permissions": ["sample.notes.read"], "secret": "mine"},
    ]
    for body in cases:
        response = await client.post("/api/v1/api-keys", json=body, headers=admin)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/v1/api-keys", headers=admin)).json() == []


async def test_revoked_key_stops_at_once_and_revoking_again_is_harmless(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await new_key(client, admin, ["sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(NOTES, headers=headers)).status_code == 200
    for _ in range(2):
        revoked = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
        assert revoked.status_code == 204, revoked.text
    refused = await client.get(NOTES, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("invalid-api-key")
    listed = (await client.get("/api/v1/api-keys", headers=admin)).json()
    assert listed[0]["revoked"] is True
    assert listed[0]["revoked_at"] is not None
    actions = [e.action for e in await audit_actions(kernel, tenant.id)]
    assert actions.count("api_key.created") == 1
    assert actions.count("api_key.revoked") == 1
    missing = await client.delete("/api/v1/api-keys/00000000-0000-7000-8000-000000000000", headers=admin)
    assert missing.status_code == 404


async def test_revocation_announced_by_another_process_drops_the_cached_key(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    created = await new_key(client, await sign_in(tenant, "admin"), ["sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(NOTES, headers=headers)).status_code == 200  # now cached in this process
    # Another process revokes it: it writes the row and announces the digest; this one only hears it.
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(ApiKey).where(ApiKey.prefix == created["prefix"]))).scalar_one()
        row.revoked_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    await kernel.redis.publish(kernel.identity.api_keys.channel, api_key_cache_key(tenant.id, row.key_hash))
    while (status := (await client.get(NOTES, headers=headers)).status_code) == 200:
        assert time.monotonic() - started < API_KEY_CACHE_SECONDS / 2, "the announcement did not drop the key"
        await asyncio.sleep(0.02)
    assert status == 401


async def test_expired_key_is_refused_even_while_cached(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    created = await new_key(client, admin, ["sample.notes.read"], expires_at=expires.isoformat())
    assert dt.datetime.fromisoformat(created["expires_at"]) == expires
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(NOTES, headers=headers)).status_code == 200  # cached, but not past its expiry
    await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    refused = await client.get(NOTES, headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_key_of_one_tenant_is_unknown_on_another(client: Any, make_tenant: Any, sign_in: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    created = await new_key(client, await sign_in(a, "admin"), ["sample.notes.read"])
    assert (await client.get(NOTES, headers=key_headers(created["key"], a.slug))).status_code == 200  # cached
    elsewhere = await client.get(NOTES, headers=key_headers(created["key"], b.slug))
    made_up = await client.get(NOTES, headers=key_headers(f"iok_{'0' * 16}_{'x' * 43}", b.slug))
    assert elsewhere.status_code == made_up.status_code == 401
    # The answer tells nothing more than a made-up key gets: not that the key exists elsewhere.
    assert elsewhere.json() == made_up.json()
    assert a.slug not in elsewhere.text
    assert created["name"] not in elsewhere.text
    # Trying a fresh key on the wrong tenant first does not spoil it for its own.
    fresh = await new_key(client, await sign_in(a, "admin"), ["sample.notes.read"])
    assert (await client.get(NOTES, headers=key_headers(fresh["key"], b.slug))).status_code == 401
    assert (await client.get(NOTES, headers=key_headers(fresh["key"], a.slug))).status_code == 200


async def test_listing_never_shows_secrets_and_tracks_last_use(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await new_key(client, admin, ["sample.notes.read", "sample.notes.write"], name="erp sync")
    listed = await client.get("/api/v1/api-keys", headers=admin)
    assert listed.status_code == 200
    (entry,) = listed.json()
    assert created["key"] not in listed.text
    # The secret is everything after the prefix (token_urlsafe: it may hold "_" itself, so the part
    # after the last "_" could be a single character found anywhere in the listing).
    assert created["key"].split(f"{created['prefix']}_", 1)[1] not in listed.text
    assert "key" not in entry
    assert "key_hash" not in entry
    assert entry["name"] == "erp sync"
    assert entry["prefix"] == created["prefix"]
    assert entry["permissions"] == ["sample.notes.read", "sample.notes.write"]
    assert entry["revoked"] is False
    assert entry["expires_at"] is None
    assert entry["last_used_at"] is None
    assert entry["created_by"] is not None
    assert entry["created_at"]
    assert (await client.get(NOTES, headers=key_headers(created["key"], tenant.slug))).status_code == 200
    (used,) = (await client.get("/api/v1/api-keys", headers=admin)).json()
    assert used["last_used_at"] is not None


async def test_a_key_cannot_make_keys_or_act_as_a_user(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await new_key(client, admin, ["kernel.api_keys.write", "sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    made = await create_key(client, headers, ["sample.notes.read"])
    assert made.status_code == 403
    assert made.json()["type"].endswith("user-required")
    for path in ("/api/v1/me", "/api/v1/me/sessions"):
        assert (await client.get(path, headers=headers)).status_code == 403
    assert len((await client.get("/api/v1/api-keys", headers=admin)).json()) == 1


async def test_only_roles_with_the_permission_manage_keys(client: Any, make_tenant: Any, sign_in: Any) -> None:
    tenant = await make_tenant()
    for role in ("viewer", "member", "manager"):
        headers = await sign_in(tenant, role)
        assert (await client.get("/api/v1/api-keys", headers=headers)).status_code == 403
        assert (await create_key(client, headers, ["sample.notes.read"])).status_code == 403
    created = await new_key(client, await sign_in(tenant, "admin"), ["sample.notes.read"])
    viewer = await sign_in(tenant, "viewer")
    assert (await client.delete(f"/api/v1/api-keys/{created['id']}", headers=viewer)).status_code == 403
    assert (await client.get(NOTES, headers=key_headers(created["key"], tenant.slug))).status_code == 200


async def test_payloads_in_key_names_are_stored_verbatim_and_never_run(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    names = [
        "x'); DROP TABLE api_keys; --",
        '"><script>alert(document.cookie)</script>',
        "' OR '1'='1",
        "{{ 7*7 }} ${7*7} \\u0000",
    ]
    for name in names:
        created = await new_key(client, admin, ["sample.notes.read"], name=name)
        assert created["name"] == name
    listed = await client.get("/api/v1/api-keys", headers=admin)
    assert listed.headers["content-type"].startswith("application/json")
    assert listed.headers["x-content-type-options"] == "nosniff"
    assert sorted(k["name"] for k in listed.json()) == sorted(names)
    assert '\\"><script>' in listed.text  # the quote is escaped: a JSON string, not markup
    # The table is intact and the audit log holds the same text.
    async with kernel.db.session(tenant.id) as session:
        stored = (await session.execute(select(ApiKey.name))).scalars().all()
    assert sorted(stored) == sorted(names)
    logged = [e.details["name"] for e in await audit_actions(kernel, tenant.id) if e.action == "api_key.created"]
    assert sorted(logged) == sorted(names)


# -- a key acts for its owner, at every request ----------------------------------------------------------

MEMBERS = "/api/v1/members"


async def user_id_of(client: Any, headers: dict[str, str]) -> str:
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return str(me.json()["user_id"])


async def set_role(client: Any, owner: dict[str, str], user_id: str, role: str) -> None:
    changed = await client.patch(f"{MEMBERS}/{user_id}", json={"role": role}, headers=owner)
    assert changed.status_code == 200, changed.text


async def hand_over(client: Any, headers: dict[str, str], key_id: str, user_id: str) -> Any:
    return await client.post(f"/api/v1/api-keys/{key_id}/owner", json={"user_id": user_id}, headers=headers)


async def listed_key(client: Any, headers: dict[str, str], key_id: str) -> dict[str, Any]:
    listed = await client.get("/api/v1/api-keys", headers=headers)
    assert listed.status_code == 200, listed.text
    (entry,) = [k for k in listed.json() if k["id"] == key_id]
    return dict(entry)


async def test_demoting_the_creator_takes_what_they_lost_from_their_keys_at_once(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    admin = await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    created = await new_key(client, admin, ["kernel.members.read", "sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(MEMBERS, headers=headers)).status_code == 200  # now cached in this process

    await set_role(client, owner, admin_id, "member")
    refused = await client.get(MEMBERS, headers=headers)  # no waiting: the RBAC change is the signal
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"].endswith(":forbidden")
    assert problem["permission"] == "kernel.members.read"
    assert "owner" in problem["detail"]
    # What the member role still grants, the key still does.
    assert (await client.get(NOTES, headers=headers)).status_code == 200

    await set_role(client, owner, admin_id, "admin")
    assert (await client.get(MEMBERS, headers=headers)).status_code == 200


async def test_removed_creators_key_does_nothing_until_an_admin_hands_it_over(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    owner_id = await user_id_of(client, owner)
    admin = await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    successor = await sign_in(tenant, "admin")
    successor_id = await user_id_of(client, successor)
    created = await new_key(client, admin, ["kernel.members.read", "sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(NOTES, headers=headers)).status_code == 200  # now cached in this process

    removed = await client.delete(f"{MEMBERS}/{admin_id}", headers=owner)
    assert removed.status_code == 204, removed.text
    # Refused everywhere, including what every member may do: the key has nobody to act for.
    for path in (MEMBERS, NOTES, "/api/v1/permissions"):
        refused = await client.get(path, headers=headers)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"].endswith(":api-key-owner-removed")
        assert "hand it over" in problem["detail"]
        assert "revoke" in problem["detail"]
    entry = await listed_key(client, owner, created["id"])
    assert entry["status"] == "owner_removed"
    assert entry["effective_permissions"] == []
    assert entry["owner"]["user_id"] == admin_id  # still named, so an admin knows whose key it was

    handed = await hand_over(client, owner, created["id"], successor_id)
    assert handed.status_code == 200, handed.text
    body = handed.json()
    assert body["owner"]["user_id"] == successor_id
    assert body["status"] == "active"
    assert body["effective_permissions"] == ["kernel.members.read", "sample.notes.read"]
    assert (await client.get(MEMBERS, headers=headers)).status_code == 200
    assert (await client.get(NOTES, headers=headers)).status_code == 200

    (logged,) = [e for e in await audit_actions(kernel, tenant.id) if e.action == "api_key.owner_changed"]
    assert str(logged.actor_id) == owner_id
    assert logged.details["api_key_id"] == created["id"]
    assert logged.details["previous_owner"] == admin_id
    assert logged.details["new_owner"] == successor_id
    assert logged.details["prefix"] == created["prefix"]


async def test_handed_over_key_follows_its_new_owner_in_every_process_at_once(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    admin = await sign_in(tenant, "admin")
    member_id = await user_id_of(client, await sign_in(tenant, "member"))
    created = await new_key(client, admin, ["kernel.members.read", "sample.notes.read"])
    headers = key_headers(created["key"], tenant.slug)
    assert (await client.get(MEMBERS, headers=headers)).status_code == 200  # cached, acting for the admin
    heard: list[str] = []
    async with kernel.redis.pubsub() as pubsub:
        await pubsub.subscribe(kernel.identity.api_keys.channel)
        handed = await hand_over(client, owner, created["id"], member_id)
        assert handed.status_code == 200, handed.text
        started = time.monotonic()
        while not heard and time.monotonic() - started < 2:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                heard.append(message["data"].decode() if isinstance(message["data"], bytes) else message["data"])
    # Other processes are told to forget the cached key, as for a revocation.
    async with kernel.db.session(tenant.id) as session:
        row = (await session.execute(select(ApiKey).where(ApiKey.prefix == created["prefix"]))).scalar_one()
    assert heard == [api_key_cache_key(tenant.id, row.key_hash)]
    # Here, at once: a member may not read the member list, so neither may the key now.
    refused = await client.get(MEMBERS, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["permission"] == "kernel.members.read"
    assert (await client.get(NOTES, headers=headers)).status_code == 200
    assert handed.json()["effective_permissions"] == ["sample.notes.read"]


async def test_hand_over_reveals_no_one_outside_the_tenant_and_grants_nothing_the_admin_lacks(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant, elsewhere = await make_tenant(), await make_tenant()
    owner = await sign_in(tenant, "owner")
    owner_id = await user_id_of(client, owner)
    admin = await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    stranger_id = await user_id_of(client, await sign_in(elsewhere, "owner"))
    created = await new_key(client, admin, ["kernel.members.read", "sample.notes.read"])

    nobody = await hand_over(client, owner, created["id"], "00000000-0000-7000-8000-000000000000")
    stranger = await hand_over(client, owner, created["id"], stranger_id)
    assert nobody.status_code == stranger.status_code == 404
    assert nobody.json() == stranger.json()  # a member of another tenant looks exactly like nobody
    no_key = await hand_over(client, owner, "00000000-0000-7000-8000-000000000000", admin_id)
    assert no_key.status_code == 404
    other_key = await new_key(client, await sign_in(elsewhere, "admin"), ["sample.notes.read"])
    assert (await hand_over(client, owner, other_key["id"], admin_id)).status_code == 404

    # An admin demoted to a role that still manages keys cannot win back, by handing their key to the
    # owner, what the demotion took from it.
    role = await client.post(
        "/api/v1/roles",
        json={"name": "integrator", "permissions": ["kernel.api_keys.write", "sample.notes.read"]},
        headers=owner,
    )
    assert role.status_code == 201, role.text
    await set_role(client, owner, admin_id, "integrator")
    refused = await hand_over(client, admin, created["id"], owner_id)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith(":permission-not-held")
    assert refused.json()["permissions"] == ["kernel.members.read"]
    assert (await listed_key(client, owner, created["id"]))["owner"]["user_id"] == admin_id

    # A key cannot hand keys over, even one allowed to manage keys.
    key_admin = await new_key(client, owner, ["kernel.api_keys.write"])
    by_key = await hand_over(client, key_headers(key_admin["key"], tenant.slug), created["id"], owner_id)
    assert by_key.status_code == 403
    assert by_key.json()["type"].endswith(":user-required")
    # A revoked key stays revoked: there is nothing to hand over.
    assert (await client.delete(f"/api/v1/api-keys/{created['id']}", headers=owner)).status_code == 204
    assert (await hand_over(client, owner, created["id"], owner_id)).status_code == 409
    assert not [e for e in await audit_actions(kernel, tenant.id) if e.action == "api_key.owner_changed"]


async def test_key_list_shows_each_keys_owner_status_and_what_it_can_do_now(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    admin_email = f"keymaker-{secrets.token_hex(4)}@example.com"
    admin = await sign_in(tenant, "admin", email=admin_email)
    admin_id = await user_id_of(client, admin)
    working = await new_key(client, admin, ["kernel.members.read", "sample.notes.read"], name="working")
    revoked = await new_key(client, admin, ["sample.notes.read"], name="revoked")
    expiring = await new_key(
        client,
        admin,
        ["sample.notes.read"],
        name="expired",
        expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(),
    )
    orphan = await new_key(client, owner, ["sample.notes.read"], name="orphan")
    assert (await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=admin)).status_code == 204
    async with kernel.db.session(tenant.id) as session:
        keys = {k.name: k for k in (await session.execute(select(ApiKey))).scalars()}
        keys["expired"].expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        # What deleting the owner's account leaves behind (created_by is ON DELETE SET NULL).
        keys["orphan"].created_by = None
    await set_role(client, owner, admin_id, "member")

    entry = await listed_key(client, owner, working["id"])
    assert entry["owner"] == {"user_id": admin_id, "email": admin_email, "name": ""}
    assert entry["created_by"] == admin_id
    assert entry["status"] == "active"
    assert entry["permissions"] == ["kernel.members.read", "sample.notes.read"]
    assert entry["effective_permissions"] == ["sample.notes.read"]
    assert (await listed_key(client, owner, revoked["id"]))["status"] == "revoked"
    assert (await listed_key(client, owner, expiring["id"]))["status"] == "expired"
    deleted = await listed_key(client, owner, orphan["id"])
    assert deleted["owner"] is None
    assert deleted["created_by"] is None
    assert deleted["status"] == "owner_removed"
    assert deleted["effective_permissions"] == []
    for gone in (revoked, expiring, orphan):
        assert (await listed_key(client, owner, gone["id"]))["effective_permissions"] == []
    refused = await client.get(NOTES, headers=key_headers(orphan["key"], tenant.slug))
    assert refused.status_code == 403
    assert refused.json()["type"].endswith(":api-key-owner-removed")


async def test_crm_lets_a_demoted_creators_key_see_and_do_only_what_the_creator_still_may(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await sign_in(tenant, "owner")
    owner_id = await user_id_of(client, owner)
    admin = await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    made = await client.post(
        "/api/v1/crm/leads?allow_duplicate=true", json={"name": "Owner's prospect", "owner_id": owner_id}, headers=owner
    )
    assert made.status_code == 201, made.text
    lead_id = made.json()["id"]
    created = await new_key(client, admin, ["crm.leads.read", "crm.leads.read_all", "crm.leads.export"])
    headers = key_headers(created["key"], tenant.slug)
    leads = await client.get("/api/v1/crm/leads", headers=headers)
    assert [lead["id"] for lead in leads.json()["items"]] == [lead_id]
    assert (await client.get(f"/api/v1/crm/leads/{lead_id}", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/crm/leads/export", headers=headers)).status_code == 200

    await set_role(client, owner, admin_id, "member")
    # A member sees their own leads and unassigned ones: the owner's lead is gone for the key too.
    leads = await client.get("/api/v1/crm/leads", headers=headers)
    assert leads.status_code == 200, leads.text
    assert leads.json()["items"] == []
    assert (await client.get(f"/api/v1/crm/leads/{lead_id}", headers=headers)).status_code == 404
    export = await client.get("/api/v1/crm/leads/export", headers=headers)
    assert export.status_code == 403
    assert export.json()["permission"] == "crm.leads.export"
