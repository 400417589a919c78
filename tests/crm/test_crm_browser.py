"""The CRM board in real Chromium: drag and drop, live moves on a colleague's board, stale moves,
keyboard-only moves, and axe-core on the lead list, a lead page and the board."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 42"
FOLLOWING = "(window.inopsioFollowing || []).includes('crm.deal.*')"


async def _open_board(
    browser: Any, kernel: Any, tenant: Any, base: str, role: str = "member", *, deaf_to: str | None = None
) -> Any:
    """A member's board, live; ``deaf_to``: an event type whose messages never reach this page."""
    email = f"{role}-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(tenant, email, PASSWORD, role, verified=True)
    page = await browser.new_page()
    if deaf_to is not None:
        marker = f'"type":"{deaf_to}"'

        def relay(socket: Any) -> None:
            server = socket.connect_to_server()
            server.on_message(lambda message: None if marker in str(message) else socket.send(message))

        await page.route_web_socket("**/api/v1/ws*", relay)
    await page.goto(f"{base}/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    await page.goto(f"{base}/crm/pipeline")
    await page.wait_for_selector("html[data-crm-board=ready]")
    # From the server's confirmation on, no event is missed.
    await page.wait_for_function(FOLLOWING)
    return page


async def _column_of(page: Any, deal_id: str) -> str:
    return str(
        await page.evaluate(
            "id => document.getElementById('deal-' + id).closest('.board-column').dataset.stage", deal_id
        )
    )


async def _drag(page: Any, deal_id: str, stage_id: str) -> None:
    """Drag a card by its title into a stage's list with the mouse (SortableJS follows pointer events)."""
    source = await page.locator(f"#deal-{deal_id} .deal-title").bounding_box()
    target = await page.locator(f".board-column[data-stage='{stage_id}'] .deal-list").bounding_box()
    await page.mouse.move(source["x"] + source["width"] / 2, source["y"] + source["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(source["x"] + source["width"] / 2 + 5, source["y"] + source["height"] / 2 + 5, steps=3)
    await page.mouse.move(target["x"] + target["width"] / 2, target["y"] + target["height"] - 8, steps=15)
    await page.mouse.up()


@pytest.fixture
async def crm_board(client: Any, make_tenant: Any, sign_in: Any, live_server: Any) -> Any:
    tenant = await make_tenant()
    api = await sign_in(tenant, "owner")
    deals = []
    for title in ("Acme renewal", "Globex pilot"):
        response = await client.post(
            "/api/v1/crm/deals", json={"title": title, "value": "1000", "currency": "EUR"}, headers=api
        )
        assert response.status_code == 201, response.text
        deals.append(response.json())
    board = (await client.get(f"/api/v1/crm/pipelines/{deals[0]['pipeline_id']}/board", headers=api)).json()
    stages = [c["stage"]["id"] for c in board["columns"]]
    port = live_server.url.rsplit(":", 1)[1]
    return {
        "tenant": tenant,
        "api": api,
        "deals": deals,
        "stages": stages,
        "base": f"http://{tenant.slug}.localhost:{port}",
    }


async def test_a_dragged_deal_moves_on_a_colleagues_board_live(
    browser: Any, kernel: Any, crm_board: Any, client: Any, drain_events: Any
) -> None:
    deal, stages = crm_board["deals"][0], crm_board["stages"]
    alice = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    bob = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    assert await _column_of(bob, deal["id"]) == stages[0]

    async with alice.expect_response(lambda r: r.url.endswith(f"/deals/{deal['id']}/move")) as moved:
        await _drag(alice, deal["id"], stages[2])
    assert (await moved.value).status == 200
    assert await _column_of(alice, deal["id"]) == stages[2]
    stored = (await client.get(f"/api/v1/crm/deals/{deal['id']}", headers=crm_board["api"])).json()
    assert stored["stage_id"] == stages[2]

    # Bob's board follows without a reload (the same document keeps its marker).
    await bob.evaluate("window.notReloaded = true")
    await drain_events()
    await bob.wait_for_function(
        "([id, stage]) => document.getElementById('deal-' + id).closest('.board-column').dataset.stage === stage",
        arg=[deal["id"], stages[2]],
    )
    assert await bob.evaluate("window.notReloaded === true")
    counts = await bob.locator(".stage-count").all_text_contents()
    assert counts[0] == "1"
    assert counts[2] == "1"


async def test_a_stale_move_shows_the_conflict_and_the_deal_where_it_is(
    browser: Any, kernel: Any, crm_board: Any, client: Any
) -> None:
    deal, stages = crm_board["deals"][1], crm_board["stages"]
    page = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"], deaf_to="crm.deal.stage_changed")
    # Someone else moves the deal; this board has not heard of it yet (its event is held back).
    moved = await client.post(
        f"/api/v1/crm/deals/{deal['id']}/move",
        json={"stage_id": stages[3], "position": 0, "version": deal["version"]},
        headers=crm_board["api"],
    )
    assert moved.status_code == 200, moved.text
    await page.click(f"#deal-{deal['id']} button[data-move=right]")
    await page.wait_for_selector("#board-alert:not([hidden])")
    assert "meanwhile" in (await page.text_content("#board-alert") or "")
    assert await _column_of(page, deal["id"]) == stages[3]
    assert await page.get_attribute(f"#deal-{deal['id']}", "data-version") == str(moved.json()["version"])


async def test_keyboard_only_moves_keep_the_focus_on_the_deal(browser: Any, kernel: Any, crm_board: Any) -> None:
    deal, stages = crm_board["deals"][0], crm_board["stages"]
    page = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    button = page.locator(f"#deal-{deal['id']} button[data-move=right]")
    await button.focus()
    for expected in (stages[1], stages[2]):
        async with page.expect_response(lambda r: r.url.endswith("/move")):
            await page.keyboard.press("Enter")
        await page.wait_for_function(
            "([id, stage]) => document.getElementById('deal-' + id).closest('.board-column').dataset.stage === stage",
            arg=[deal["id"], expected],
        )
        await page.wait_for_function(
            "id => document.activeElement && document.activeElement.closest('#deal-' + id) !== null"
            " && document.activeElement.dataset.move === 'right'",
            arg=deal["id"],
        )
    assert "moved to" in (await page.text_content("#board-status") or "")
    # Back with the left arrow button, reached with Shift+Tab from the focused one.
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate("document.activeElement.dataset.move") == "left"
    async with page.expect_response(lambda r: r.url.endswith("/move")):
        await page.keyboard.press("Enter")
    await page.wait_for_function(
        "([id, stage]) => document.getElementById('deal-' + id).closest('.board-column').dataset.stage === stage",
        arg=[deal["id"], stages[1]],
    )


async def test_crm_pages_pass_axe(
    browser: Any, kernel: Any, crm_board: Any, client: Any, assert_accessible: Any
) -> None:
    lead = await client.post(
        "/api/v1/crm/leads?allow_duplicate=true",
        json={"name": "Grace Hopper", "email": "grace@example.com"},
        headers=crm_board["api"],
    )
    assert lead.status_code == 201, lead.text
    page = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    await assert_accessible(page)
    await page.goto(f"{crm_board['base']}/crm/leads")
    await page.wait_for_selector("text=Grace Hopper")
    await assert_accessible(page)
    await page.goto(f"{crm_board['base']}/crm/leads/{lead.json()['id']}")
    await assert_accessible(page)


async def test_value_per_stage_chart_and_its_table_follow_the_moves(
    browser: Any, kernel: Any, crm_board: Any, client: Any, drain_events: Any
) -> None:
    deal, stages = crm_board["deals"][0], crm_board["stages"]
    page = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    await page.wait_for_selector("#metrics-chart[data-loaded='1'] .uplot canvas")
    assert await page.get_attribute("#metrics-chart", "aria-hidden") == "true"
    rows = page.locator("#metrics-table tbody tr")
    assert await rows.count() == len(stages)
    first = await rows.nth(0).locator("td").all_text_contents()
    assert first[0] == "2"
    assert "2,000" in first[1]
    # A colleague's move arrives live: the chart is redrawn and the table says the new figures.
    moved = await client.post(
        f"/api/v1/crm/deals/{deal['id']}/move",
        json={"stage_id": stages[1], "position": 0, "version": deal["version"]},
        headers=crm_board["api"],
    )
    assert moved.status_code == 200, moved.text
    await drain_events()
    await page.wait_for_selector("#metrics-chart[data-loaded='2'] .uplot canvas")
    assert (await rows.nth(0).locator("td").all_text_contents())[0] == "1"
    second = await rows.nth(1).locator("td").all_text_contents()
    assert second[0] == "1"
    assert "1,000" in second[1]
    await assert_no_missing_name(page)


async def assert_no_missing_name(page: Any) -> None:
    """The chart's figure is named by its caption; the table has a caption too."""
    assert await page.get_attribute("figure.board-metrics", "aria-labelledby") == "metrics-caption"
    assert (await page.text_content("#metrics-table caption") or "").strip()


async def test_dragging_a_deal_within_its_column_reorders_it(
    browser: Any, kernel: Any, crm_board: Any, client: Any
) -> None:
    first, second = crm_board["deals"]
    page = await _open_board(browser, kernel, crm_board["tenant"], crm_board["base"])
    order = (
        "s => Array.from(document.querySelectorAll(`.board-column[data-stage='${s}'] .deal`)).map(d => d.dataset.deal)"
    )
    before = await page.evaluate(order, crm_board["stages"][0])
    assert sorted(before) == sorted([first["id"], second["id"]])
    top, bottom = before
    # Drop the top card below the bottom one.
    source = await page.locator(f"#deal-{top} .deal-title").bounding_box()
    target = await page.locator(f"#deal-{bottom}").bounding_box()
    await page.mouse.move(source["x"] + 10, source["y"] + source["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(source["x"] + 15, source["y"] + source["height"] / 2 + 5, steps=3)
    async with page.expect_response(lambda r: r.url.endswith(f"/deals/{top}/move")) as moved:
        await page.mouse.move(target["x"] + 10, target["y"] + target["height"] - 4, steps=15)
        await page.mouse.up()
    assert (await moved.value).status == 200
    assert await page.evaluate(order, crm_board["stages"][0]) == [bottom, top]
    stored = (await client.get(f"/api/v1/crm/deals/{top}", headers=crm_board["api"])).json()
    assert stored["position"] == 1
