"""The lead list: full-text search, filters, sorting, keyset pages, who sees what, and the bin."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update

from inopsio.jobs import drain
from inopsio_crm.access import Viewer
from inopsio_crm.leads import listing
from inopsio_crm.leads.listing import LeadFilters, LeadList
from inopsio_crm.leads.models import Lead, LeadTerm

LEADS = "/api/v1/crm/leads"


async def purge_bin(kernel: Any, tenant_id: UUID, **kwargs: Any) -> int:
    """Run the CRM's scheduled bin purge now for one tenant, through a worker; returns how many it purged."""
    job_id = await kernel.jobs.enqueue("crm.purge_deleted_leads", tenant_id=tenant_id, **kwargs)
    await drain(kernel)
    result = await kernel.jobs.result(job_id)
    assert result is not None
    assert result.success, result.result
    return int(result.result)


async def test_search_filters_and_sorting(client: Any, make_tenant: Any, member: Any, new_lead: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    await new_lead(
        owner.headers,
        name="Marie Curie",
        company="Radium Institute",
        source="fair",
        status="qualified",
        tags=["science", "vip"],
        estimated_value="5000",
        currency="EUR",
    )
    await new_lead(
        owner.headers,
        name="Pierre Curie",
        company="Sorbonne",
        source="website",
        tags=["science"],
        estimated_value="100",
        currency="EUR",
    )
    await new_lead(
        owner.headers,
        name="Niels Bohr",
        email="niels@bohr.example",
        company="Copenhagen",
        source="fair",
        owner_id=owner.user_id,
    )

    async def names(query: str) -> list[str]:
        response = await client.get(f"{LEADS}?{query}", headers=owner.headers)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert sorted(await names("q=curie")) == ["Marie Curie", "Pierre Curie"]
    assert await names("q=cur radi") == ["Marie Curie"]  # every word, as prefixes
    assert await names("q=niels@bohr") == ["Niels Bohr"]
    # tsquery syntax typed into the box is only text
    assert sorted(await names("q=curie%27%3A*%20%26%20!%7C")) == ["Marie Curie", "Pierre Curie"]
    assert sorted(await names("source=fair")) == ["Marie Curie", "Niels Bohr"]
    assert await names("status=qualified") == ["Marie Curie"]
    assert sorted(await names("status=qualified&status=new")) == ["Marie Curie", "Niels Bohr", "Pierre Curie"]
    assert await names("tag=science&tag=vip") == ["Marie Curie"]
    assert await names("value_min=1000") == ["Marie Curie"]
    assert await names("value_max=1000") == ["Pierre Curie"]
    assert await names(f"owner={owner.user_id}") == ["Niels Bohr"]
    assert await names("owner=me") == ["Niels Bohr"]
    assert sorted(await names("owner=none")) == ["Marie Curie", "Pierre Curie"]
    assert await names("sort=name") == ["Marie Curie", "Niels Bohr", "Pierre Curie"]
    assert await names("sort=-name") == ["Pierre Curie", "Niels Bohr", "Marie Curie"]
    assert await names("sort=-estimated_value") == ["Marie Curie", "Pierre Curie", "Niels Bohr"]
    assert await names("sort=-created_at") == ["Niels Bohr", "Pierre Curie", "Marie Curie"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert await names(f"created_from={future}") == []
    assert len(await names(f"created_to={future}")) == 3
    bad_sort = await client.get(f"{LEADS}?sort=password", headers=owner.headers)
    assert bad_sort.status_code == 400
    bad_owner = await client.get(f"{LEADS}?owner=someone", headers=owner.headers)
    assert bad_owner.status_code == 400


async def test_keyset_pages_cover_every_lead_once_in_every_sort(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    for i in range(23):
        await new_lead(owner.headers, name=f"Lead {i % 7}", estimated_value=str(i % 4 * 10), currency="EUR")
    sorts = ("-created_at", "created_at", "name", "-name", "estimated_value", "-estimated_value", "updated_at")
    # Without a search the sort index drives the query; with one, the matches are found first.
    for sort, q in [(s, "") for s in sorts] + [(s, "&q=lead") for s in sorts]:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            url = f"{LEADS}?limit=5&sort={sort}{q}" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(url, headers=owner.headers)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 23, sort
    first = (await client.get(f"{LEADS}?limit=5&sort=name", headers=owner.headers)).json()
    wrong = await client.get(f"{LEADS}?sort=-name&cursor={first['next_cursor']}", headers=owner.headers)
    assert wrong.status_code == 400
    garbage = await client.get(f"{LEADS}?cursor=not-a-cursor", headers=owner.headers)
    assert garbage.status_code == 400


async def test_members_see_their_own_and_unassigned_leads_managers_see_all(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    alice = await member(tenant, "member")
    bob = await member(tenant, "member")
    viewer = await member(tenant, "viewer")
    alices = await new_lead(manager.headers, name="For Alice", owner_id=alice.user_id)
    bobs = await new_lead(manager.headers, name="For Bob", owner_id=bob.user_id)
    await new_lead(manager.headers, name="Nobody's")

    async def names(who: Any) -> list[str]:
        return sorted(i["name"] for i in (await client.get(LEADS, headers=who.headers)).json()["items"])

    assert await names(manager) == ["For Alice", "For Bob", "Nobody's"]
    assert await names(alice) == ["For Alice", "Nobody's"]
    assert await names(bob) == ["For Bob", "Nobody's"]
    assert await names(viewer) == ["Nobody's"]
    hidden = await client.get(f"{LEADS}/{bobs['id']}", headers=alice.headers)
    assert hidden.status_code == 404
    assert (await client.patch(f"{LEADS}/{bobs['id']}", json={"name": "x"}, headers=alice.headers)).status_code == 404
    assert (await client.get(f"{LEADS}/{alices['id']}", headers=alice.headers)).status_code == 200
    # A member may take a lead for themselves but not hand it to someone else.
    give = await client.post(LEADS, json={"name": "Gift", "owner_id": bob.user_id}, headers=alice.headers)
    assert give.status_code == 403
    take = await client.post(LEADS, json={"name": "Mine", "owner_id": alice.user_id}, headers=alice.headers)
    assert take.status_code == 201
    # Duplicates the member may not see are counted, never shown.
    dup = await client.post(LEADS, json={"name": "For Bob"}, headers=alice.headers)
    assert dup.status_code == 409
    assert dup.json()["matches"] == []
    assert dup.json()["hidden_matches"] == 1
    # Viewers read, never write.
    assert (await client.post(LEADS, json={"name": "V"}, headers=viewer.headers)).status_code == 403


async def test_read_all_is_a_casbin_permission_a_custom_role_can_grant(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant, "owner")
    auditor = await member(tenant, "member")
    other = await member(tenant, "member")
    await new_lead(owner.headers, name="Someone else's", owner_id=other.user_id)
    assert (await client.get(LEADS, headers=auditor.headers)).json()["items"] == []
    role = await client.post(
        "/api/v1/roles",
        json={
            "name": "auditor",
            "description": "Reads everything",
            "permissions": ["crm.leads.read", "crm.leads.read_all"],
        },
        headers=owner.headers,
    )
    assert role.status_code == 201, role.text
    changed = await client.patch(f"/api/v1/members/{auditor.user_id}", json={"role": "auditor"}, headers=owner.headers)
    assert changed.status_code in (200, 204), changed.text
    assert kernel.identity.authorizer.allowed(__import__("uuid").UUID(auditor.user_id), tenant.id, "crm.leads.read_all")
    assert [i["name"] for i in (await client.get(LEADS, headers=auditor.headers)).json()["items"]] == ["Someone else's"]


async def test_deleted_lead_can_be_restored_until_it_is_purged(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    staff = await member(tenant, "member")
    lead = await new_lead(manager.headers, name="Oops")
    kept = await new_lead(manager.headers, name="Kept")
    assert (await client.delete(f"{LEADS}/{lead['id']}", headers=staff.headers)).status_code == 403
    deleted = await client.delete(f"{LEADS}/{lead['id']}", headers=manager.headers)
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"] is not None
    assert (await client.get(f"{LEADS}/{lead['id']}", headers=manager.headers)).status_code == 404
    assert [i["name"] for i in (await client.get(LEADS, headers=manager.headers)).json()["items"]] == ["Kept"]
    binned = (await client.get(f"{LEADS}?deleted=true", headers=manager.headers)).json()["items"]
    assert [i["id"] for i in binned] == [lead["id"]]
    restored = await client.post(f"{LEADS}/{lead['id']}/restore", headers=manager.headers)
    assert restored.status_code == 200
    assert restored.json()["deleted_at"] is None
    assert (await client.post(f"{LEADS}/{lead['id']}/restore", headers=manager.headers)).status_code == 404
    # Within the undo window the purge job leaves it; past it, the lead is gone for good.
    await client.delete(f"{LEADS}/{lead['id']}", headers=manager.headers)
    await purge_bin(kernel, tenant.id)
    assert (await client.post(f"{LEADS}/{lead['id']}/restore", headers=manager.headers)).status_code == 200
    await client.delete(f"{LEADS}/{lead['id']}", headers=manager.headers)
    assert await purge_bin(kernel, tenant.id, undo_days=0) == 1
    assert (await client.post(f"{LEADS}/{lead['id']}/restore", headers=manager.headers)).status_code == 404
    assert (await client.get(f"{LEADS}/{kept['id']}", headers=manager.headers)).status_code == 200


async def test_bin_is_purged_on_schedule_only_where_the_crm_is_on(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    from inopsio.jobs.tenants import fan_out
    from inopsio.tenancy.schemas import TenantSettingsPatch

    binned = {}
    for _ in range(2):
        tenant = await make_tenant()
        manager = await member(tenant, "manager")
        lead = await new_lead(manager.headers, name="Long gone")
        await client.delete(f"{LEADS}/{lead['id']}", headers=manager.headers)
        async with kernel.db.session(tenant.id) as session:  # in the bin for longer than the undo window
            await session.execute(
                update(Lead)
                .where(Lead.id == UUID(lead["id"]))
                .values(deleted_at=Lead.deleted_at - dt.timedelta(days=31))
            )
        binned[tenant.id] = UUID(lead["id"])
    crm_on, crm_off = binned
    await kernel.tenants.update_settings(crm_off, TenantSettingsPatch(disabled_modules=["crm"]))
    assert kernel.jobs.definitions["crm.purge_deleted_leads"].per_tenant
    scheduled = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await fan_out(kernel, "crm.purge_deleted_leads", scheduled)
    await drain(kernel)
    for tenant_id, left in ((crm_on, 0), (crm_off, 1)):
        async with kernel.db.session(tenant_id) as session:
            count = await session.execute(select(func.count()).select_from(Lead).where(Lead.id == binned[tenant_id]))
            assert count.scalar_one() == left


async def test_search_follows_edits_and_forgets_purged_leads(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    from sqlalchemy import func, select

    from inopsio_crm.leads.models import LeadTerm

    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    lead = await new_lead(manager.headers, name="Oldname Person", company="Zeta")

    async def names(q: str) -> list[str]:
        return [i["name"] for i in (await client.get(f"{LEADS}?q={q}", headers=manager.headers)).json()["items"]]

    async def terms() -> int:
        async with kernel.db.session(tenant.id) as session:
            return int((await session.execute(select(func.count()).select_from(LeadTerm))).scalar_one())

    assert await names("oldn") == ["Oldname Person"]
    before = await terms()
    await client.patch(f"{LEADS}/{lead['id']}", json={"name": "Newname Person"}, headers=manager.headers)
    assert await names("oldn") == []
    assert await names("newn zet") == ["Newname Person"]
    await client.patch(f"{LEADS}/{lead['id']}", json={"status": "contacted"}, headers=manager.headers)
    assert await terms() == before  # a change outside the search document leaves the terms alone
    await client.delete(f"{LEADS}/{lead['id']}", headers=manager.headers)
    await purge_bin(kernel, tenant.id, undo_days=0)
    assert await terms() == 0


async def _names(client: Any, headers: dict[str, str], query: str) -> list[str]:
    response = await client.get(f"{LEADS}?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


async def test_tags_are_found_through_the_term_index_and_follow_edits(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    vip = await new_lead(manager.headers, name="Vip Person", tags=["vip", "Fair 2026"])
    await new_lead(manager.headers, name="Plain Person", tags=["VIP"])  # tags match with their case
    # Tags longer than a term keeps (the API takes 50 characters; stored data may hold more).
    long_tag, almost = "x" * 120, "x" * 119 + "y"
    for name, tag in (("Long Tagged", long_tag), ("Almost Tagged", almost)):
        lead = await new_lead(manager.headers, name=name)
        async with kernel.db.session(tenant.id) as session:
            await session.execute(update(Lead).where(Lead.id == UUID(lead["id"])).values(tags=[tag]))
    await new_lead(manager.headers, name="Percent Tagged", tags=["50%_off", "o'hara"])
    assert await _names(client, manager.headers, "tag=vip") == ["Vip Person"]
    assert await _names(client, manager.headers, "tag=Fair+2026&tag=vip&q=vip") == ["Vip Person"]
    assert await _names(client, manager.headers, "tag=fair+2026") == []
    assert await _names(client, manager.headers, f"tag={long_tag}") == ["Long Tagged"]
    assert await _names(client, manager.headers, f"tag={almost}&sort=name") == ["Almost Tagged"]
    assert await _names(client, manager.headers, "tag=50%25_off&tag=o%27hara") == ["Percent Tagged"]
    assert await _names(client, manager.headers, "tag=nobody-has-this") == []
    # Changing a lead's tags moves it between the lists at once.
    patched = await client.patch(f"{LEADS}/{vip['id']}", json={"tags": ["gold"]}, headers=manager.headers)
    assert patched.status_code == 200, patched.text
    assert await _names(client, manager.headers, "tag=vip") == []
    assert await _names(client, manager.headers, "tag=gold&q=pers") == ["Vip Person"]
    # A deleted lead leaves the tag's list; purged, its tag terms go with it.
    await client.delete(f"{LEADS}/{vip['id']}", headers=manager.headers)
    assert await _names(client, manager.headers, "tag=gold") == []
    assert await _names(client, manager.headers, "tag=gold&deleted=true") == ["Vip Person"]
    await purge_bin(kernel, tenant.id, undo_days=0)
    async with kernel.db.session(tenant.id) as session:
        terms = LeadTerm.__table__.c
        left = await session.execute(select(func.count()).where(terms.lead_id == UUID(vip["id"])))
        assert left.scalar_one() == 0


async def test_common_words_and_tags_give_the_same_pages_as_rare_ones(
    make_tenant: Any, member: Any, new_lead: Any, kernel: Any, monkeypatch: Any
) -> None:
    """Past SEARCH_FIRST matches the list walks the sort order instead of fetching the matches by id:
    both ways give the same leads in the same order, page after page, for every sort and filter."""
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    staff = await member(tenant, "member")
    for i in range(9):
        await new_lead(
            manager.headers,
            name=f"Lead {'Alpha' if i % 3 else 'Beta'} {i % 4}",
            company="Common Corp" if i % 2 else "Rare Ltd",
            status="new" if i % 3 else "qualified",
            tags=["hot", "vip"] if i % 2 else ["hot"],
            estimated_value=str(i * 10) if i % 4 else None,
            currency="EUR" if i % 4 else None,
            owner_id=manager.user_id if i % 5 == 0 else None,
        )
    everyone = Viewer(user_id=UUID(manager.user_id), read_all=True, can_assign=True)
    own = Viewer(user_id=UUID(staff.user_id), read_all=False, can_assign=False)
    filters = {
        "word": LeadFilters(q="lead"),
        "two words": LeadFilters(q="common alp"),
        "tag": LeadFilters(tags=["hot"]),
        "tag and word": LeadFilters(q="lead", tags=["vip"]),
        "word and status": LeadFilters(q="lead", status=["new"]),
        "tag, unassigned, value": LeadFilters(tags=["hot"], owner="none", value_min=Decimal("10")),
    }
    sorts = ("name", "-name", "-created_at", "estimated_value", "-estimated_value", "updated_at")

    async def pages(viewer: Viewer, wanted: LeadFilters, sort: str) -> list[str]:
        leads = LeadList(kernel.db.reader(tenant.id), tenant.id, viewer)
        names: list[str] = []
        cursor = None
        for _ in range(20):
            page = await leads.page(wanted, sort=sort, limit=2, cursor=cursor)
            names += [item.name for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                return names
        raise AssertionError("more pages than leads")

    cases = [(viewer, name, sort) for viewer in (everyone, own) for name in filters for sort in sorts]
    by_ids = {case: await pages(case[0], filters[case[1]], case[2]) for case in cases}
    monkeypatch.setattr(listing, "SEARCH_FIRST", 1)
    for case in cases:
        assert await pages(case[0], filters[case[1]], case[2]) == by_ids[case], case
    assert len(by_ids[everyone, "word", "name"]) == 9
    assert by_ids[everyone, "word", "name"] == sorted(by_ids[everyone, "word", "name"])
    assert len(by_ids[everyone, "tag and word", "name"]) == 4
    assert len(by_ids[own, "word", "name"]) == 7  # two belong to someone else
    assert len(by_ids[everyone, "tag, unassigned, value", "name"]) == 5
