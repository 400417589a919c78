"""The CRM's company, contact and import pages over HTTP: what they show, to whom, the links between
leads, contacts, companies and the board, the lead list's export links, and tenant isolation."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from typing import Any

HTML = {"Accept": "text/html,application/xhtml+xml"}
COMPANIES = "/api/v1/crm/companies"
CONTACTS = "/api/v1/crm/contacts"


def _html(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, **HTML}


async def _post(client: Any, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def _next_link(text: str, path: str) -> str | None:
    found = re.search(rf'href="({re.escape(path)}\?[^"]*cursor=[^"]+)">Next page', text)
    return html.unescape(found.group(1)) if found else None


async def test_company_list_searches_and_pages_by_name(
    client: Any, make_tenant: Any, member: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("inopsio_crm.contacts.pages.PAGE_SIZE", 2)
    tenant = await make_tenant()
    owner = await member(tenant)
    for name in ("initech", "Globex", "Acme", "Umbrella"):
        await _post(client, COMPANIES, {"name": name}, owner.headers)
    first = await client.get("/crm/companies", headers=_html(owner.headers))
    assert first.status_code == 200, first.text
    names = re.findall(r'<a href="/crm/companies/[0-9a-f-]+">([^<]+)</a>', first.text)
    assert names == ["Acme", "Globex"]  # by name, whatever the case
    assert f'data-api="{COMPANIES}"' in first.text
    link = _next_link(first.text, "/crm/companies")
    assert link is not None
    second = await client.get(link, headers=_html(owner.headers))
    assert re.findall(r'<a href="/crm/companies/[0-9a-f-]+">([^<]+)</a>', second.text) == ["initech", "Umbrella"]
    assert _next_link(second.text, "/crm/companies") is None
    assert 'href="/crm/companies?q=">First page' in second.text
    searched = await client.get("/crm/companies?q=GLO", headers=_html(owner.headers))
    assert re.findall(r'<a href="/crm/companies/[0-9a-f-]+">([^<]+)</a>', searched.text) == ["Globex"]
    nothing = await client.get("/crm/companies?q=100%25_", headers=_html(owner.headers))
    assert "No company matches" in nothing.text
    forged = await client.get("/crm/companies?cursor=bm90LWEtY3Vyc29y", headers=_html(owner.headers))
    assert forged.status_code == 400
    assert "cursor" in forged.text


async def test_company_page_shows_its_contacts_deals_and_the_forms_each_role_may_use(
    client: Any, make_tenant: Any, member: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    company = await _post(
        client,
        COMPANIES,
        {"name": "Acme AG", "domain": "acme.example", "address": "Bahnhofstr. 1\n8001 Zürich"},
        owner.headers,
    )
    ann = await _post(
        client, CONTACTS, {"name": "Ann Buyer", "title": "CFO", "company_id": company["id"]}, owner.headers
    )
    await _post(client, CONTACTS, {"name": "Elsewhere Person"}, owner.headers)
    deal = await _post(
        client,
        "/api/v1/crm/deals",
        {
            "title": "Acme renewal",
            "value": "5000",
            "currency": "EUR",
            "company_id": company["id"],
            "contact_id": ann["id"],
        },
        owner.headers,
    )
    page = await client.get(f"/crm/companies/{company['id']}", headers=_html(owner.headers))
    assert page.status_code == 200, page.text
    assert "<h1>Acme AG</h1>" in page.text
    assert "8001 Zürich" in page.text
    assert f'<a href="/crm/contacts/{ann["id"]}">Ann Buyer</a>' in page.text
    assert "Elsewhere Person" not in page.text
    assert f'href="/crm/pipelines/{deal["pipeline_id"]}#deal-{deal["id"]}">Acme renewal</a>' in page.text
    assert "Qualification" in page.text  # the deal's stage
    assert f'data-api="{COMPANIES}/{company["id"]}" data-method="PATCH"' in page.text
    assert f'data-api-call="{COMPANIES}/{company["id"]}" data-method="DELETE"' in page.text
    assert f'name="company_id" value="{company["id"]}"' in page.text  # the add-a-contact form

    # A member edits but may not delete; a viewer only reads.
    rep = await member(tenant, "member")
    as_rep = await client.get(f"/crm/companies/{company['id']}", headers=_html(rep.headers))
    assert 'data-method="PATCH"' in as_rep.text
    assert 'data-method="DELETE"' not in as_rep.text
    viewer = await member(tenant, "viewer")
    as_viewer = await client.get(f"/crm/companies/{company['id']}", headers=_html(viewer.headers))
    assert as_viewer.status_code == 200
    assert "data-api" not in as_viewer.text.split("<main", 1)[1]
    assert "Ann Buyer" in as_viewer.text

    # The board's card links back to the company and the contact.
    board = await client.get(f"/crm/pipelines/{deal['pipeline_id']}", headers=_html(owner.headers))
    assert f'<a href="/crm/companies/{company["id"]}">Acme AG</a>' in board.text
    assert f'<a href="/crm/contacts/{ann["id"]}">Ann Buyer</a>' in board.text


async def test_another_tenants_company_or_contact_gets_the_same_404_page_as_a_missing_one(
    client: Any, make_tenant: Any, member: Any
) -> None:
    ours, theirs = await make_tenant(), await make_tenant()
    owner, stranger = await member(ours), await member(theirs)
    company = await _post(client, COMPANIES, {"name": "Secret Corp"}, stranger.headers)
    contact = await _post(client, CONTACTS, {"name": "Secret Person", "company_id": company["id"]}, stranger.headers)
    for path, record in (("/crm/companies", company), ("/crm/contacts", contact)):
        foreign = await client.get(f"{path}/{record['id']}", headers=_html(owner.headers))
        missing = await client.get(f"{path}/{uuid.uuid4()}", headers=_html(owner.headers))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.headers["content-type"].startswith("text/html")
        assert foreign.text == missing.text
        assert "Secret" not in foreign.text
    # Nor does a filter by their company show their contacts.
    filtered = await client.get(f"/crm/contacts?company_id={company['id']}", headers=_html(owner.headers))
    assert filtered.status_code == 200
    assert "Secret" not in filtered.text
    assert "No contact matches" in filtered.text


async def test_contact_list_filters_by_company_and_search_and_links_each_contact_to_its_company(
    client: Any, make_tenant: Any, member: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("inopsio_crm.contacts.pages.PAGE_SIZE", 2)
    tenant = await make_tenant()
    owner = await member(tenant)
    acme = await _post(client, COMPANIES, {"name": "Acme"}, owner.headers)
    globex = await _post(client, COMPANIES, {"name": "Globex"}, owner.headers)
    await _post(client, COMPANIES, {"name": "Initech"}, owner.headers)
    for name, company in (("Cleo", acme), ("Bert", acme), ("Abel", acme), ("Dora", globex)):
        await _post(
            client,
            CONTACTS,
            {"name": name, "email": f"{name.lower()}@example.com", "company_id": company["id"]},
            owner.headers,
        )
    page = await client.get(f"/crm/contacts?company_id={acme['id']}", headers=_html(owner.headers))
    assert page.status_code == 200, page.text
    rows = re.findall(r'<a href="/crm/contacts/[0-9a-f-]+">([^<]+)</a>', page.text)
    assert rows == ["Abel", "Bert"]
    assert page.text.count(f'<a href="/crm/companies/{acme["id"]}">Acme</a>') == 2
    assert f'<option value="{acme["id"]}" selected>Acme</option>' in page.text
    link = _next_link(page.text, "/crm/contacts")
    assert link is not None
    assert f"company_id={acme['id']}" in link
    rest = await client.get(link, headers=_html(owner.headers))
    assert re.findall(r'<a href="/crm/contacts/[0-9a-f-]+">([^<]+)</a>', rest.text) == ["Cleo"]
    by_mail = await client.get("/crm/contacts?q=dora@&company_id=", headers=_html(owner.headers))
    assert re.findall(r'<a href="/crm/contacts/[0-9a-f-]+">([^<]+)</a>', by_mail.text) == ["Dora"]
    bad = await client.get("/crm/contacts?company_id=not-an-id", headers=_html(owner.headers))
    assert bad.status_code == 400
    # The company list's cursor is refused by the contact list.
    companies = await client.get("/crm/companies", headers=_html(owner.headers))
    company_cursor = re.search(r"cursor=([^\"&]+)", companies.text)
    assert company_cursor is not None
    refused = await client.get(f"/crm/contacts?cursor={company_cursor.group(1)}", headers=_html(owner.headers))
    assert refused.status_code == 400


async def test_converting_a_lead_links_lead_contact_company_and_deal_pages(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    lead = await new_lead(
        manager.headers, name="Grace Hopper", company="Navy Labs", estimated_value="900", currency="EUR"
    )
    before = await client.get(f"/crm/leads/{lead['id']}", headers=_html(manager.headers))
    assert f'data-api="/api/v1/crm/leads/{lead["id"]}/convert"' in before.text
    assert 'data-redirect="/crm/contacts/{contact.id}"' in before.text
    assert 'value="Navy Labs"' in before.text
    viewer = await member(tenant, "viewer")
    as_viewer = await client.get(f"/crm/leads/{lead['id']}", headers=_html(viewer.headers))
    assert "/convert" not in as_viewer.text

    converted = await _post(client, f"/api/v1/crm/leads/{lead['id']}/convert", {}, manager.headers)
    contact, company, deal = converted["contact"], converted["company"], converted["deal"]
    after = await client.get(f"/crm/leads/{lead['id']}", headers=_html(manager.headers))
    assert "/convert" not in after.text
    assert f'<a href="/crm/contacts/{contact["id"]}">Grace Hopper</a>' in after.text
    assert f'href="/crm/pipelines/{deal["pipeline_id"]}#deal-{deal["id"]}"' in after.text

    contact_page = await client.get(f"/crm/contacts/{contact['id']}", headers=_html(manager.headers))
    assert contact_page.status_code == 200, contact_page.text
    assert f'<a href="/crm/leads/{lead["id"]}">the lead Grace Hopper</a>' in contact_page.text
    assert f'<a href="/crm/companies/{company["id"]}">Navy Labs</a>' in contact_page.text
    assert f"#deal-{deal['id']}" in contact_page.text
    assert f'<option value="{company["id"]}" selected>Navy Labs</option>' in contact_page.text
    company_page = await client.get(f"/crm/companies/{company['id']}", headers=_html(manager.headers))
    assert f'<a href="/crm/contacts/{contact["id"]}">Grace Hopper</a>' in company_page.text

    # A member who may not see the lead (someone else's) gets no link to it.
    await client.post(
        f"/api/v1/crm/leads/{lead['id']}/assign", json={"owner_id": manager.user_id}, headers=manager.headers
    )
    rep = await member(tenant, "member")
    as_rep = await client.get(f"/crm/contacts/{contact['id']}", headers=_html(rep.headers))
    assert as_rep.status_code == 200
    assert f"/crm/leads/{lead['id']}" not in as_rep.text


async def test_menu_shows_contacts_and_companies_only_to_those_who_may_read_them(
    client: Any, make_tenant: Any, member: Any, sign_in: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    home = await client.get("/", headers=_html(owner.headers))
    assert 'href="/crm/contacts"' in home.text
    assert 'href="/crm/companies"' in home.text
    role = await client.post(
        "/api/v1/roles", json={"name": "lead-reader", "permissions": ["crm.leads.read"]}, headers=owner.headers
    )
    assert role.status_code == 201, role.text
    reader = await sign_in(tenant, "lead-reader")
    leads = await client.get("/crm/leads", headers=_html(reader))
    assert leads.status_code == 200
    assert 'href="/crm/leads"' in leads.text
    assert 'href="/crm/contacts"' not in leads.text
    assert 'href="/crm/companies"' not in leads.text
    assert 'href="/crm/leads/import"' not in leads.text
    assert "/api/v1/crm/leads/export" not in leads.text
    refused = await client.get("/crm/contacts", headers=_html(reader))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")


async def test_lead_list_export_links_carry_the_lists_filters(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    await new_lead(manager.headers, name="Ada Lovelace", email="ada@example.com")
    await new_lead(manager.headers, name="Ada Other", email="other@example.com", status="qualified")
    await new_lead(manager.headers, name="Charles Babbage", email="charles@example.com")
    page = await client.get("/crm/leads?q=ada&status=new", headers=_html(manager.headers))
    found = re.search(r'id="export-csv" href="([^"]+)"', page.text)
    assert found is not None
    href = html.unescape(found.group(1))
    assert href == "/api/v1/crm/leads/export?q=ada&status=new&format=csv"
    assert 'id="export-xlsx" href="/api/v1/crm/leads/export?q=ada&amp;status=new&amp;format=xlsx"' in page.text
    exported = await client.get(href, headers=manager.headers)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [r["name"] for r in rows] == ["Ada Lovelace"]
    unfiltered = await client.get("/crm/leads", headers=_html(manager.headers))
    assert 'id="export-csv" href="/api/v1/crm/leads/export?format=csv"' in unfiltered.text
    assert 'href="/crm/leads/import"' in unfiltered.text
    rep = await member(tenant, "member")
    as_rep = await client.get("/crm/leads", headers=_html(rep.headers))
    assert "export-csv" not in as_rep.text
    assert 'href="/crm/leads/import"' not in as_rep.text


async def test_import_pages_show_the_guessed_mapping_with_samples_then_the_report(
    client: Any, make_tenant: Any, member: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    content = "\ufeffName;E-Mail;Lieblingsfarbe\nAda Lovelace;ada@example.com;blau\nBad Row;not-an-email;rot\n".encode()
    uploaded = await client.post(
        "/api/v1/crm/imports?filename=people.csv",
        content=content,
        headers={**manager.headers, "Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 201, uploaded.text
    record = uploaded.json()
    start = await client.get("/crm/leads/import", headers=_html(manager.headers))
    assert start.status_code == 200
    assert f'<a href="/crm/leads/import/{record["id"]}">people.csv</a>' in start.text
    page = await client.get(f"/crm/leads/import/{record['id']}", headers=_html(manager.headers))
    assert page.status_code == 200, page.text
    assert "semicolons" in page.text
    assert '<option value="name" selected>Name</option>' in page.text
    assert '<option value="email" selected>E-mail</option>' in page.text
    unguessed = re.search(r'<select id="mapping-2" name="mapping.2".*?</select>', page.text, re.S)
    assert unguessed is not None
    assert "selected" not in unguessed.group(0)
    assert "<span>blau</span><span>rot</span>" in page.text  # the first values beside each column
    assert 'aria-current="step">Map columns' in page.text

    started = await client.post(f"/api/v1/crm/imports/{record['id']}/start", json={}, headers=manager.headers)
    assert started.status_code == 202
    # The import record names the job as the job status API knows it.
    stored = (await client.get(f"/api/v1/crm/imports/{record['id']}", headers=manager.headers)).json()
    assert stored["job_id"] == started.json()["job_id"]
    job = await client.get(f"/api/v1/jobs/{stored['job_id']}", headers=manager.headers)
    assert job.status_code == 200
    assert job.json()["status"] == "queued"
    running = await client.get(f"/crm/leads/import/{record['id']}", headers=_html(manager.headers))
    assert f'data-job="{started.json()["job_id"]}"' in running.text
    assert "<progress" in running.text
    await run_jobs()
    report = await client.get(f"/crm/leads/import/{record['id']}", headers=_html(manager.headers))
    assert '<dd id="count-created">1</dd>' in report.text
    assert '<dd id="count-rejected">1</dd>' in report.text
    assert f'href="/api/v1/crm/imports/{record["id"]}/rejects.csv"' in report.text
    assert "email:" in report.text
    assert "Bad Row" in report.text

    rep = await member(tenant, "member")
    assert (await client.get("/crm/leads/import", headers=_html(rep.headers))).status_code == 403
    other = await member(await make_tenant())
    foreign = await client.get(f"/crm/leads/import/{record['id']}", headers=_html(other.headers))
    assert foreign.status_code == 404
