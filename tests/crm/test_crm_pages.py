"""The CRM's pages in the web shell: lead list, lead timeline, pipeline board, dashboard card, menu."""

from __future__ import annotations

import re
from typing import Any

HTML = {"Accept": "text/html,application/xhtml+xml"}


def _html(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, **HTML}


async def test_lead_pages_list_search_and_show_the_timeline(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    rep = await member(tenant, "member")
    ada = await new_lead(manager.headers, name="Ada Lovelace", company="Engines", notes="First contact")
    await new_lead(manager.headers, name="Hidden Lead", owner_id=manager.user_id)
    page = await client.get("/crm/leads", headers=_html(manager.headers))
    assert page.status_code == 200, page.text
    assert "Ada Lovelace" in page.text
    assert "Hidden Lead" in page.text
    assert 'data-api="/api/v1/crm/leads"' in page.text
    searched = await client.get("/crm/leads?q=ada", headers=_html(manager.headers))
    assert "Ada Lovelace" in searched.text
    assert "Hidden Lead" not in searched.text
    own_view = await client.get("/crm/leads", headers=_html(rep.headers))
    assert "Ada Lovelace" in own_view.text
    assert "Hidden Lead" not in own_view.text
    detail = await client.get(f"/crm/leads/{ada['id']}", headers=_html(manager.headers))
    assert detail.status_code == 200
    assert "First contact" in detail.text
    assert f'data-api="/api/v1/crm/leads/{ada["id"]}/notes"' in detail.text
    missing = await client.get("/crm/leads/0192f0a0-0000-7000-8000-000000000000", headers=_html(manager.headers))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


async def test_board_page_shows_columns_with_keyboard_moves_and_its_script(
    client: Any, make_tenant: Any, member: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    viewer = await member(tenant, "viewer")
    deal = (
        await client.post(
            "/api/v1/crm/deals", json={"title": "Board deal", "value": "1200", "currency": "EUR"}, headers=owner.headers
        )
    ).json()
    redirect = await client.get("/crm/pipeline", headers=_html(owner.headers))
    assert redirect.status_code == 303
    board = await client.get(redirect.headers["location"], headers=_html(owner.headers))
    assert board.status_code == 200, board.text
    assert board.text.count('class="board-column"') == 5
    assert f'data-deal="{deal["id"]}"' in board.text
    assert 'aria-label="Move Board deal to the next stage"' in board.text
    script = re.search(r'src="(/static/crm/board\.[0-9a-f]{12}\.js)"', board.text)
    assert script
    assert (await client.get(script.group(1))).status_code == 200
    read_only = await client.get(redirect.headers["location"], headers=_html(viewer.headers))
    assert "data-move=" not in read_only.text


async def test_menu_and_dashboard_card(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    await client.post(
        "/api/v1/crm/deals", json={"title": "Card deal", "value": "1000", "currency": "EUR"}, headers=owner.headers
    )
    home = await client.get("/", headers=_html(owner.headers))
    assert 'href="/crm/leads"' in home.text
    assert 'href="/crm/pipeline"' in home.text
    assert "/crm/cards/pipeline" in home.text
    card = await client.get("/crm/cards/pipeline", headers=_html(owner.headers))
    assert card.status_code == 200
    assert "1 open deal" in card.text
    off = await make_tenant(settings={"disabled_modules": ["crm"]})
    home_off = await client.get("/", headers=_html((await member(off)).headers))
    assert 'href="/crm/leads"' not in home_off.text
