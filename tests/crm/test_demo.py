"""Demo data: a living, deterministic CRM in well under three seconds."""

from __future__ import annotations

import time
from typing import Any

from inopsio_crm.plugin import seed_demo_data


async def test_demo_data_fills_the_crm_quickly_and_deterministically(
    client: Any, kernel: Any, make_tenant: Any, member: Any
) -> None:
    names = []
    for _ in range(2):
        tenant = await make_tenant()
        owner = await member(tenant)
        started = time.perf_counter()
        async with kernel.db.session(tenant.id) as session:
            await seed_demo_data(tenant, session)
        assert time.perf_counter() - started < 3
        page = (await client.get("/api/v1/crm/leads?limit=200&sort=name", headers=owner.headers)).json()
        assert len(page["items"]) == 200
        assert page["next_cursor"] is not None
        assert all(lead["email"] and "@" in lead["email"] for lead in page["items"])
        names.append([lead["name"] for lead in page["items"]])
        pipeline = (await client.get("/api/v1/crm/pipelines", headers=owner.headers)).json()[0]
        board = (await client.get(f"/api/v1/crm/pipelines/{pipeline['id']}/board", headers=owner.headers)).json()
        counts = [len(column["deals"]) for column in board["columns"]]
        assert sum(counts) == 60
        assert sum(1 for c in counts if c) >= 4
        for column in board["columns"]:
            assert [d["position"] for d in column["deals"]] == list(range(len(column["deals"])))
        metrics = (await client.get(f"/api/v1/crm/pipelines/{pipeline['id']}/metrics", headers=owner.headers)).json()
        assert metrics["win_rate"] is not None
        assert len((await client.get("/api/v1/crm/companies", headers=owner.headers)).json()) == 40
        assert len((await client.get("/api/v1/crm/contacts?limit=500", headers=owner.headers)).json()) == 90
        search = (await client.get("/api/v1/crm/leads?q=a", headers=owner.headers)).json()
        assert search["items"]
    assert names[0] == names[1]
