"""Pipelines, stages and deals: default pipeline, stage editing, versioned moves, events, metrics."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from sqlalchemy import func, select
from websockets.asyncio.client import connect

from inopsio.events.models import EventRecord
from inopsio_crm.access import Viewer
from inopsio_crm.pipeline.models import Deal, DealStageChange
from inopsio_crm.pipeline.schemas import DealIn, DealMove
from inopsio_crm.pipeline.services import PipelineService

PIPELINES = "/api/v1/crm/pipelines"
DEALS = "/api/v1/crm/deals"


async def _events(kernel: Any, tenant_id: Any, prefix: str = "crm.deal.") -> list[tuple[str, dict[str, Any]]]:
    async with kernel.db.session(tenant_id) as session:
        rows = await session.execute(
            select(EventRecord).where(EventRecord.type.startswith(prefix)).order_by(EventRecord.id)
        )
        return [(r.type, r.data) for r in rows.scalars()]


async def _sales(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    pipelines = (await client.get(PIPELINES, headers=headers)).json()
    assert len(pipelines) == 1
    return dict(pipelines[0])


async def test_new_tenant_gets_a_pipeline_with_five_stages(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    viewer = await member(tenant, "viewer")
    sales = await _sales(client, viewer.headers)
    assert [(s["name"], s["probability"], s["kind"]) for s in sales["stages"]] == [
        ("Qualification", 10, "open"),
        ("Proposal", 40, "open"),
        ("Negotiation", 70, "open"),
        ("Won", 100, "won"),
        ("Lost", 0, "lost"),
    ]


async def test_stages_are_added_renamed_reordered_and_deleted_with_their_deals_moved(
    client: Any, make_tenant: Any, member: Any
) -> None:
    tenant = await make_tenant()
    admin = await member(tenant, "admin")
    staff = await member(tenant, "member")
    sales = await _sales(client, admin.headers)
    assert (
        await client.post(f"{PIPELINES}/{sales['id']}/stages", json={"name": "X"}, headers=staff.headers)
    ).status_code == 403
    demo = await client.post(
        f"{PIPELINES}/{sales['id']}/stages",
        json={"name": "Demo", "probability": 30, "position": 1},
        headers=admin.headers,
    )
    assert demo.status_code == 201, demo.text
    stages = (await client.get(f"{PIPELINES}/{sales['id']}", headers=admin.headers)).json()["stages"]
    assert [s["name"] for s in stages] == ["Qualification", "Demo", "Proposal", "Negotiation", "Won", "Lost"]
    assert [s["position"] for s in stages] == list(range(6))
    renamed = await client.patch(
        f"/api/v1/crm/stages/{demo.json()['id']}",
        json={"name": "Product demo", "probability": 35},
        headers=admin.headers,
    )
    assert renamed.json()["name"] == "Product demo"
    order = [stages[2]["id"], stages[0]["id"], stages[1]["id"], *[s["id"] for s in stages[3:]]]
    reordered = await client.put(
        f"{PIPELINES}/{sales['id']}/stage-order", json={"stage_ids": order}, headers=admin.headers
    )
    assert [s["id"] for s in reordered.json()] == order
    incomplete = await client.put(
        f"{PIPELINES}/{sales['id']}/stage-order", json={"stage_ids": order[:-1]}, headers=admin.headers
    )
    assert incomplete.status_code == 422
    deal = await client.post(DEALS, json={"title": "Big one", "stage_id": demo.json()["id"]}, headers=admin.headers)
    assert deal.status_code == 201, deal.text
    refused = await client.delete(f"/api/v1/crm/stages/{demo.json()['id']}", headers=admin.headers)
    assert refused.status_code == 422
    other = await client.post(PIPELINES, json={"name": "Other"}, headers=admin.headers)
    wrong_pipeline = await client.delete(
        f"/api/v1/crm/stages/{demo.json()['id']}?move_to={other.json()['stages'][0]['id']}", headers=admin.headers
    )
    assert wrong_pipeline.status_code == 422
    deleted = await client.delete(
        f"/api/v1/crm/stages/{demo.json()['id']}?move_to={stages[0]['id']}", headers=admin.headers
    )
    assert deleted.status_code == 204
    moved = (await client.get(f"{DEALS}/{deal.json()['id']}", headers=admin.headers)).json()
    assert moved["stage_id"] == stages[0]["id"]
    assert moved["version"] == 2
    positions = [
        s["position"] for s in (await client.get(f"{PIPELINES}/{sales['id']}", headers=admin.headers)).json()["stages"]
    ]
    assert positions == list(range(5))
    assert (await client.delete(f"{PIPELINES}/{sales['id']}", headers=admin.headers)).status_code == 409
    assert (await client.delete(f"{PIPELINES}/{other.json()['id']}", headers=admin.headers)).status_code == 204


async def test_deal_validation_refuses_foreign_and_mismatched_references(
    client: Any, make_tenant: Any, member: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    owner, outsider = await member(tenant), await member(other)
    theirs = await _sales(client, outsider.headers)
    foreign_company = await client.post("/api/v1/crm/companies", json={"name": "Theirs"}, headers=outsider.headers)
    response = await client.post(
        DEALS,
        json={
            "title": "Sneaky",
            "pipeline_id": theirs["id"],
            "company_id": foreign_company.json()["id"],
            "owner_id": outsider.user_id,
            "value": "10",
        },
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert {e["pointer"] for e in response.json()["errors"]} == {
        "/pipeline_id",
        "/company_id",
        "/owner_id",
        "/currency",
    }


async def test_moves_keep_columns_dense_refuse_stale_versions_and_publish_events(
    client: Any, make_tenant: Any, member: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    sales = await _sales(client, owner.headers)
    qualification, proposal, won, lost = (sales["stages"][i]["id"] for i in (0, 1, 3, 4))
    deals = []
    for title in ("A", "B", "C"):
        created = await client.post(
            DEALS, json={"title": title, "value": "1000", "currency": "EUR"}, headers=owner.headers
        )
        deals.append(created.json())
    assert [d["position"] for d in deals] == [0, 1, 2]
    a = deals[0]
    moved = await client.post(
        f"{DEALS}/{a['id']}/move",
        json={"stage_id": proposal, "position": 0, "version": a["version"]},
        headers=owner.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["version"] == a["version"] + 1
    # The loser of a race sees the deal as it is now.
    stale = await client.post(
        f"{DEALS}/{a['id']}/move",
        json={"stage_id": qualification, "position": 0, "version": a["version"]},
        headers=owner.headers,
    )
    assert stale.status_code == 409
    assert stale.json()["current"]["stage_id"] == proposal
    assert stale.json()["current"]["version"] == moved.json()["version"]
    board = (await client.get(f"{PIPELINES}/{sales['id']}/board", headers=owner.headers)).json()
    columns = {c["stage"]["id"]: [(d["title"], d["position"]) for d in c["deals"]] for c in board["columns"]}
    assert columns[qualification] == [("B", 0), ("C", 1)]
    assert columns[proposal] == [("A", 0)]
    # Reorder within a column.
    c = next(d for d in deals if d["title"] == "C")
    within = await client.post(
        f"{DEALS}/{c['id']}/move",
        json={"stage_id": qualification, "position": 0, "version": c["version"]},
        headers=owner.headers,
    )
    assert within.json()["position"] == 0
    board = (await client.get(f"{PIPELINES}/{sales['id']}/board", headers=owner.headers)).json()
    assert [d["title"] for d in board["columns"][0]["deals"]] == ["C", "B"]
    current = moved.json()
    win = await client.post(
        f"{DEALS}/{a['id']}/move",
        json={"stage_id": won, "position": 99, "version": current["version"]},
        headers=owner.headers,
    )
    assert win.json()["closed_at"] is not None
    b = next(d for d in deals if d["title"] == "B")
    b_now = (await client.get(f"{DEALS}/{b['id']}", headers=owner.headers)).json()
    await client.post(
        f"{DEALS}/{b['id']}/move",
        json={"stage_id": lost, "position": 0, "version": b_now["version"]},
        headers=owner.headers,
    )
    other = await client.post(PIPELINES, json={"name": "Other"}, headers=owner.headers)
    cross = await client.post(
        f"{DEALS}/{c['id']}/move",
        json={"stage_id": other.json()["stages"][0]["id"], "position": 0, "version": within.json()["version"]},
        headers=owner.headers,
    )
    assert cross.status_code == 422
    types = [t for t, _ in await _events(kernel, tenant.id)]
    assert types.count("crm.deal.created") == 3
    assert types.count("crm.deal.stage_changed") == 4
    assert types.count("crm.deal.won") == 1
    assert types.count("crm.deal.lost") == 1
    # Editing fields is versioned too.
    edit = await client.patch(f"{DEALS}/{a['id']}", json={"version": 1, "title": "Old"}, headers=owner.headers)
    assert edit.status_code == 409
    latest = (await client.get(f"{DEALS}/{a['id']}", headers=owner.headers)).json()
    edit = await client.patch(
        f"{DEALS}/{a['id']}",
        json={"version": latest["version"], "title": "Renamed", "probability": 90},
        headers=owner.headers,
    )
    assert edit.status_code == 200
    assert edit.json()["version"] == latest["version"] + 1


async def test_concurrent_moves_of_one_deal_never_lose_an_update(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    sales = await _sales(client, owner.headers)
    deal = (await client.post(DEALS, json={"title": "Contested"}, headers=owner.headers)).json()
    targets = [sales["stages"][1]["id"], sales["stages"][2]["id"]]
    results = await asyncio.gather(
        *(
            client.post(
                f"{DEALS}/{deal['id']}/move",
                json={"stage_id": t, "position": 0, "version": deal["version"]},
                headers=owner.headers,
            )
            for t in targets
        )
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    winner = next(r for r in results if r.status_code == 200).json()
    loser = next(r for r in results if r.status_code == 409).json()
    assert loser["current"] == winner


async def test_other_viewers_of_the_board_see_a_move_live(
    client: Any, make_tenant: Any, member: Any, live_server: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    mover = await member(tenant)
    watcher = await member(tenant, "viewer")
    sales = await _sales(client, mover.headers)
    deal = (await client.post(DEALS, json={"title": "Live"}, headers=mover.headers)).json()
    await drain_events()
    url = f"{live_server.ws_url}/api/v1/ws"
    async with connect(url, additional_headers=watcher.headers) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": ["crm.deal.*"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 2))["op"] == "subscribed"
        await client.post(
            f"{DEALS}/{deal['id']}/move",
            json={"stage_id": sales["stages"][2]["id"], "position": 0, "version": deal["version"]},
            headers=mover.headers,
        )
        await drain_events()
        message = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert message["op"] == "event"
    assert message["event"]["type"] == "crm.deal.stage_changed"
    assert message["event"]["data"]["deal_id"] == deal["id"]
    assert message["event"]["data"]["to_stage_id"] == sales["stages"][2]["id"]


async def test_metrics_per_stage_win_rate_and_conversion(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    rep = await member(tenant, "member")
    sales = await _sales(client, owner.headers)
    _q, p, n, won, lost = (s["id"] for s in sales["stages"])

    async def deal(title: str, value: str, stages: list[str], owner_id: str | None = None) -> None:
        body: dict[str, Any] = {"title": title, "value": value, "currency": "EUR"}
        if owner_id:
            body["owner_id"] = owner_id
        created = (await client.post(DEALS, json=body, headers=owner.headers)).json()
        version = created["version"]
        for stage in stages:
            moved = await client.post(
                f"{DEALS}/{created['id']}/move",
                json={"stage_id": stage, "position": 0, "version": version},
                headers=owner.headers,
            )
            version = moved.json()["version"]

    await deal("stays", "100", [])
    await deal("proposal", "200", [p], owner_id=rep.user_id)
    await deal("won", "1000", [p, n, won])
    await deal("lost", "500", [p, lost])
    metrics = (await client.get(f"{PIPELINES}/{sales['id']}/metrics", headers=owner.headers)).json()
    by_name = {s["name"]: s for s in metrics["stages"]}
    assert by_name["Qualification"]["count"] == 1
    assert by_name["Qualification"]["total_value"] == {"EUR": "100.00"}
    assert by_name["Qualification"]["weighted_value"] == {"EUR": "10.00"}
    assert by_name["Proposal"]["weighted_value"] == {"EUR": "80.00"}
    assert by_name["Won"]["total_value"] == {"EUR": "1000.00"}
    assert metrics["count"] == 4
    assert metrics["win_rate"] == 0.5
    # 4 entered Qualification, 3 went on; 3 entered Proposal, 1 went on (to Negotiation, then won).
    assert by_name["Qualification"]["conversion"] == 0.75
    assert by_name["Proposal"]["conversion"] == round(1 / 3, 4)
    assert by_name["Won"]["conversion"] is None
    assert metrics["average_open_age_days"] is not None
    mine = (await client.get(f"{PIPELINES}/{sales['id']}/metrics?owner={rep.user_id}", headers=owner.headers)).json()
    assert mine["count"] == 1
    big = (await client.get(f"{PIPELINES}/{sales['id']}/metrics?value_min=400", headers=owner.headers)).json()
    assert big["count"] == 2


async def test_any_sequence_of_moves_keeps_every_column_dense_and_in_the_order_dropped(
    make_tenant: Any, kernel: Any
) -> None:
    """Random drops (within a column, across columns, past the end, onto won and lost and back) leave
    each column exactly as a list model of the board says, with each stage entry and close recorded."""
    tenant = await make_tenant()
    actor = Viewer(user_id=None, read_all=True, can_assign=True, label="test")
    async with kernel.db.session(tenant.id) as session:
        service = PipelineService(kernel, session, tenant, actor)
        (sales,) = await service.list_pipelines()
        kinds = {stage.id: stage.kind for stage in sales.stages}
        board: dict[Any, list[Any]] = {stage.id: [] for stage in sales.stages}
        versions: dict[Any, int] = {}
        for index in range(12):
            deal = await service.create_deal(DealIn(title=f"Deal {index}", stage_id=sales.stages[index % 3].id))
            board[deal.stage_id].append(deal.id)
            versions[deal.id] = deal.version
    rng = random.Random(6)
    closes = entries = 0
    for _ in range(60):
        deal_id = rng.choice(list(versions))
        source = next(stage for stage, ids in board.items() if deal_id in ids)
        target = rng.choice(list(board))
        position = rng.randrange(0, 15)
        async with kernel.db.session(tenant.id) as session:
            moved = await PipelineService(kernel, session, tenant, actor).move_deal(
                deal_id, DealMove(stage_id=target, position=position, version=versions[deal_id])
            )
        board[source].remove(deal_id)
        board[target].insert(min(position, len(board[target])), deal_id)
        assert (moved.stage_id, moved.position, moved.version) == (
            target,
            board[target].index(deal_id),
            versions[deal_id] + 1,
        )
        versions[deal_id] = moved.version
        if target != source:
            entries += 1
            if kinds[target] == "open":
                assert moved.closed_at is None
            elif kinds[source] != kinds[target]:
                closes += 1
                assert moved.closed_at is not None
        async with kernel.db.session(tenant.id) as session:
            rows = (await session.execute(select(Deal.stage_id, Deal.id).order_by(Deal.position))).all()
        assert {stage: [i for s, i in rows if s == stage] for stage in board} == board
    async with kernel.db.session(tenant.id) as session:
        recorded = (await session.execute(select(func.count()).select_from(DealStageChange))).scalar_one()
    assert recorded == 12 + entries
    events = [t for t, _ in await _events(kernel, tenant.id)]
    assert events.count("crm.deal.stage_changed") == 60
    assert events.count("crm.deal.won") + events.count("crm.deal.lost") == closes > 0


async def test_a_stale_move_changes_nothing(client: Any, make_tenant: Any, member: Any, kernel: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    sales = await _sales(client, owner.headers)
    first, second = [
        (await client.post(DEALS, json={"title": title}, headers=owner.headers)).json() for title in ("One", "Two")
    ]
    moved = await client.post(
        f"{DEALS}/{first['id']}/move",
        json={"stage_id": sales["stages"][1]["id"], "position": 0, "version": first["version"]},
        headers=owner.headers,
    )
    assert moved.status_code == 200
    before = (await client.get(f"{PIPELINES}/{sales['id']}/board", headers=owner.headers)).json()
    stale = await client.post(
        f"{DEALS}/{first['id']}/move",
        json={"stage_id": sales["stages"][0]["id"], "position": 0, "version": first["version"]},
        headers=owner.headers,
    )
    assert stale.status_code == 409
    assert stale.json()["current"] == moved.json()
    assert (await client.get(f"{PIPELINES}/{sales['id']}/board", headers=owner.headers)).json() == before
    missing = await client.post(
        f"{DEALS}/{tenant.id}/move",
        json={"stage_id": sales["stages"][0]["id"], "position": 0, "version": 1},
        headers=owner.headers,
    )
    assert missing.status_code == 404
    assert [t for t, _ in await _events(kernel, tenant.id)].count("crm.deal.stage_changed") == 1
    assert second["position"] == 1


async def test_concurrent_moves_across_the_same_columns_all_succeed(make_tenant: Any, kernel: Any) -> None:
    """Moves shift other deals of the columns they touch: they queue on the columns (locked in one order)
    and never deadlock, and the columns stay dense."""
    tenant = await make_tenant()
    actor = Viewer(user_id=None, read_all=True, can_assign=True, label="test")
    async with kernel.db.session(tenant.id) as session:
        service = PipelineService(kernel, session, tenant, actor)
        (sales,) = await service.list_pipelines()
        columns = [stage.id for stage in sales.stages[:3]]
        deals = [await service.create_deal(DealIn(title=f"D{i}", stage_id=columns[i % 3])) for i in range(9)]
    state = {deal.id: (columns.index(deal.stage_id), deal.version) for deal in deals}

    async def move(deal_id: Any) -> Any:
        column, version = state[deal_id]
        async with kernel.db.session(tenant.id) as session:
            return await PipelineService(kernel, session, tenant, actor).move_deal(
                deal_id, DealMove(stage_id=columns[(column + 1) % 3], position=0, version=version)
            )

    for _ in range(3):
        for moved in await asyncio.gather(*(move(deal_id) for deal_id in state)):
            state[moved.id] = (columns.index(moved.stage_id), moved.version)
    async with kernel.db.session(tenant.id) as session:
        rows = (await session.execute(select(Deal.stage_id, Deal.position))).all()
    for column in columns:
        assert sorted(position for stage, position in rows if stage == column) == [0, 1, 2]
