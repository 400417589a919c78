"""The transactional outbox: events exist exactly when their change commits, reach every matching
handler at least once, and a handler's database effect happens once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from inopsio.events.models import Delivery, EventRecord, PendingEvent
from inopsio.events.schemas import EventHandler
from inopsio_sample.models import NoteTag


async def create_note(client: Any, headers: dict[str, str], title: str = "Hello") -> dict[str, Any]:
    response = await client.post("/api/v1/sample/notes", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def tags_of(kernel: Any, tenant_id: Any, note_id: str) -> list[str]:
    async with kernel.db.session(tenant_id) as session:
        rows = await session.execute(select(NoteTag.tag).where(NoteTag.note_id == note_id))
        return list(rows.scalars())


async def test_a_published_event_is_handled_once_even_when_delivered_twice(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any
) -> None:
    tenant = await make_tenant()
    note = await create_note(client, await sign_in(tenant))
    assert await tags_of(kernel, tenant.id, note["id"]) == []
    await drain_events()
    assert await tags_of(kernel, tenant.id, note["id"]) == ["new"]
    async with kernel.db.session(tenant.id) as session:
        event = (await session.execute(select(EventRecord).where(EventRecord.type == "sample.note.created"))).scalars()
        event_id = next(e for e in event if e.data["note_id"] == note["id"]).id
        # Deliver the same event again, as after a crash between the handler's commit and the cleanup.
        session.add(PendingEvent(event_id=event_id, tenant_id=tenant.id))
    await drain_events()
    assert await tags_of(kernel, tenant.id, note["id"]) == ["new"]


async def test_no_event_exists_when_its_transaction_rolls_back(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()

    class Abort(Exception):
        pass

    try:
        async with kernel.db.session(tenant.id) as session:
            await kernel.events.publish(session, "sample.note.created", {"note_id": str(tenant.id), "title": "x"})
            raise Abort
    except Abort:
        pass
    async with kernel.db.session(tenant.id) as session:
        count = (await session.execute(select(func.count()).select_from(EventRecord))).scalar()
        pending = (
            await session.execute(
                select(func.count()).select_from(PendingEvent).where(PendingEvent.tenant_id == tenant.id)
            )
        ).scalar()
    assert count == 0
    assert pending == 0


async def test_a_failing_handler_is_retried_with_backoff_then_parked_and_replayable(
    kernel: Any, make_tenant: Any, sign_in: Any, client: Any, drain_events: Any, monkeypatch: Any
) -> None:
    tenant = await make_tenant()
    calls: list[str] = []

    async def flaky(event: Any, ctx: Any) -> None:
        calls.append(str(event.id))
        raise RuntimeError("downstream is down")

    handler = EventHandler(
        name="sample.flaky", pattern="sample.note.*", function=flaky, plugin="sample", max_attempts=2
    )
    monkeypatch.setattr(kernel.events, "handlers", [*kernel.events.handlers, handler])
    await create_note(client, await sign_in(tenant))
    await drain_events()
    assert len(calls) == 1
    async with kernel.db.session(tenant.id) as session:
        delivery = (await session.execute(select(Delivery).where(Delivery.handler == "sample.flaky"))).scalar_one()
        assert delivery.status == "retrying"
        assert delivery.next_attempt_at is not None
        # Make the retry due now instead of waiting for the backoff.
        delivery.next_attempt_at = None
    async with kernel.db.session(None) as session:
        await session.execute(
            text("UPDATE event_pending SET available_at = now() WHERE tenant_id = :t"), {"t": tenant.id}
        )
    await drain_events()
    assert len(calls) == 2
    admin = await sign_in(tenant, "admin")
    parked = await client.get("/api/v1/events/deliveries", params={"status": "parked"}, headers=admin)
    assert parked.status_code == 200
    [entry] = [d for d in parked.json() if d["handler"] == "sample.flaky"]
    assert entry["attempts"] == 2
    assert "downstream is down" in entry["last_error"]
    # The other handler of the same event was not held back by the failing one.
    assert any(
        d["handler"] == "sample.tag_new_note"
        for d in (await client.get("/api/v1/events/deliveries", params={"status": "done"}, headers=admin)).json()
    )

    replay = await client.post(f"/api/v1/events/deliveries/{entry['event_id']}/sample.flaky/replay", headers=admin)
    assert replay.status_code == 202
    await drain_events()
    assert len(calls) == 3
    member = await sign_in(tenant, "member")
    assert (await client.get("/api/v1/events/deliveries", headers=member)).status_code == 403


async def test_an_expired_claim_is_delivered_by_the_next_dispatcher(
    kernel: Any, make_tenant: Any, sign_in: Any, client: Any, drain_events: Any
) -> None:
    """A process that claimed events and died leaves them to be claimed again after the lease."""
    tenant = await make_tenant()
    note = await create_note(client, await sign_in(tenant))
    claimed = await kernel.events.claim()  # claimed, then "the process dies"
    assert any(t == tenant.id for _, t, _ in claimed)
    assert await drain_events() == 0  # still leased
    async with kernel.db.session(None) as session:
        await session.execute(
            text("UPDATE event_pending SET available_at = now() WHERE tenant_id = :t"), {"t": tenant.id}
        )
    await drain_events()
    assert await tags_of(kernel, tenant.id, note["id"]) == ["new"]


async def test_the_activity_feed_lists_only_this_tenants_events(client: Any, make_tenant: Any, sign_in: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    a_headers, b_headers = await sign_in(a), await sign_in(b)
    await create_note(client, a_headers, "A's secret")
    await create_note(client, b_headers, "B's note")
    feed = await client.get("/api/v1/events", params={"type": "sample.note.*"}, headers=a_headers)
    assert feed.status_code == 200
    titles = [e["data"]["title"] for e in feed.json()["items"]]
    assert titles == ["A's secret"]
    page = await client.get("/api/v1/events", params={"limit": 1}, headers=b_headers)
    assert len(page.json()["items"]) == 1


async def test_the_catalog_lists_declared_types_with_their_json_schema(
    client: Any, make_tenant: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    catalog = await client.get("/api/v1/events/catalog", headers=await sign_in(tenant, "viewer"))
    assert catalog.status_code == 200
    entry = {e["type"]: e for e in catalog.json()}["sample.note.created"]
    assert entry["module"] == "sample"
    schema_text = str(entry["schema"])
    assert "note_id" in schema_text
    assert "title" in schema_text


async def test_publishing_an_undeclared_type_is_refused(kernel: Any, make_tenant: Any) -> None:
    import pytest

    from inopsio.events.bus import UnknownEventType

    tenant = await make_tenant()
    with pytest.raises(UnknownEventType):
        await kernel.events.emit(tenant.id, "sample.note.vanished", {})


async def test_retention_deletes_only_events_older_than_the_setting(
    kernel: Any, make_tenant: Any, monkeypatch: Any
) -> None:
    import datetime as dt

    from inopsio.events.plugin import apply_retention

    tenant, suspended = await make_tenant(), await make_tenant()
    kept = {}
    for owner in (tenant, suspended):
        old = await kernel.events.emit(owner.id, "sample.note.created", {"note_id": str(owner.id), "title": "old"})
        new = await kernel.events.emit(owner.id, "sample.note.created", {"note_id": str(owner.id), "title": "new"})
        async with kernel.db.session(owner.id) as session:
            record = (await session.execute(select(EventRecord).where(EventRecord.id == old.id))).scalar_one()
            record.occurred_at = record.occurred_at - dt.timedelta(days=kernel.settings.event_retention_days + 1)
        kept[owner.id] = {new.id}
    # Retention goes on while a tenant is suspended: its old events go too.
    await kernel.tenants.suspend(suspended.id, "unpaid")
    assert await apply_retention({"kernel": kernel}) >= 2
    for owner in (tenant, suspended):
        async with kernel.db.session(owner.id) as session:
            left = set((await session.execute(select(EventRecord.id))).scalars())
        assert left == kept[owner.id]


def test_docs_events_md_lists_exactly_the_product_catalog() -> None:
    """docs/events.md is generated from the declarations (run `inopsio events-catalog --write`)."""
    from pathlib import Path

    from inopsio.app import collect_events
    from inopsio.events.catalog import END, START, render_markdown
    from inopsio.plugins import build_plugin_manager, installed_entry_points

    product_plugins = [name for name in installed_entry_points() if name != "sample"]
    types, _ = collect_events(build_plugin_manager(product_plugins))
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    committed = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert committed == render_markdown(types)
