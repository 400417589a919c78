"""The CRM's record pages and import wizard in real Chromium: a company and a contact created, edited
and linked through the forms; a CSV file (BOM, semicolons, one bad row) imported through every step
of the wizard to its report; axe-core on each page."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 42"
IMPORT_FILE = (
    "\ufeffVorname;Nachname;E-Mail;Firma;Betrag;Bemerkung\n"
    "Ada;Lovelace;ada@example.com;Analytical Engines;1'200,50;met at the fair\n"
    "Bad;Row;not-an-email;Nowhere;;\n"
    "Grace;Hopper;grace@example.com;Navy Labs;;\n"
).encode()


@pytest.fixture
async def crm_site(make_tenant: Any, live_server: Any) -> dict[str, Any]:
    tenant = await make_tenant()
    port = live_server.url.rsplit(":", 1)[1]
    return {"tenant": tenant, "base": f"http://{tenant.slug}.localhost:{port}"}


async def _signed_in(browser: Any, kernel: Any, site: dict[str, Any], role: str = "manager") -> Any:
    email = f"{role}-{secrets.token_hex(3)}@example.com"
    await kernel.identity.accounts.create_member(site["tenant"], email, PASSWORD, role, verified=True)
    page = await browser.new_page()
    await page.goto(f"{site['base']}/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site['base']}/")
    return page


async def test_a_company_and_its_contact_are_created_edited_and_linked_through_the_forms(
    browser: Any, kernel: Any, crm_site: Any, assert_accessible: Any
) -> None:
    base = crm_site["base"]
    page = await _signed_in(browser, kernel, crm_site)
    await page.click("nav.sidebar >> text=Companies")
    await page.wait_for_url(f"{base}/crm/companies")
    await assert_accessible(page)

    # An empty name is refused by the API; the form says so under the field and keeps what was typed.
    await page.fill("#domain", "acme.example")
    await page.click("text=Save company")
    await page.wait_for_selector("#name[aria-invalid=true]")
    assert await page.input_value("#domain") == "acme.example"
    await page.fill("#name", "Acme AG")
    await page.fill("#address", "Bahnhofstrasse 1\n8001 Zürich")
    await page.click("text=Save company")
    await page.wait_for_url(re.compile(rf"{re.escape(base)}/crm/companies/[0-9a-f-]+$"))
    company_url = page.url
    assert await page.text_content("h1") == "Acme AG"
    assert "Company saved." in (await page.text_content("#toasts") or "")
    await assert_accessible(page)

    # A contact at this company, with a phone the API refuses first.
    await page.fill("#contact-name", "Ann Buyer")
    await page.fill("#contact-phone", "12")
    await page.click("text=Add contact")
    await page.wait_for_selector("#contact-phone[aria-invalid=true]")
    assert "phone number" in (await page.text_content("#contact-phone-error") or "")
    assert await page.get_attribute("#contact-phone", "aria-describedby") == "contact-phone-error"
    await page.fill("#contact-phone", "+41 44 668 18 00")
    await page.fill("#contact-email", "ann@acme.example")
    await page.click("text=Add contact")
    await page.wait_for_selector("#company-contacts >> text=Ann Buyer")
    assert "+41446681800" in (await page.text_content("#company-contacts") or "")

    await page.click("#company-contacts >> text=Ann Buyer")
    await page.wait_for_url(re.compile(rf"{re.escape(base)}/crm/contacts/[0-9a-f-]+$"))
    await assert_accessible(page)
    # Edit: a job title, and the e-mail cleared (sent as null).
    await page.fill("#title", "Head of Purchasing")
    await page.fill("#email", "")
    await page.click("text=Save changes")
    await page.wait_for_selector(".details >> text=Head of Purchasing")
    assert "ann@acme.example" not in (await page.text_content(".details") or "")
    await page.click(".details >> text=Acme AG")
    await page.wait_for_url(company_url)

    # The contact list shows it with its company, and filters by it.
    await page.goto(f"{base}/crm/contacts")
    await page.select_option("#filter-company", label="Acme AG")
    await page.click("form[role=search] button[type=submit]")
    await page.wait_for_url(re.compile(r"company_id=[0-9a-f-]+"))
    row = page.locator("#contacts tbody tr", has_text="Ann Buyer")
    assert await row.locator("td").nth(2).text_content() == "Acme AG"
    await assert_accessible(page)

    # Deleting the company keeps its contact, without a company.
    await page.goto(company_url)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("text=Delete company")
    await page.wait_for_url(f"{base}/crm/companies")
    assert "Company deleted." in (await page.text_content("#toasts") or "")
    await page.goto(f"{base}/crm/contacts?q=ann")
    row = page.locator("#contacts tbody tr", has_text="Ann Buyer")
    assert (await row.locator("td").nth(2).text_content() or "").strip() == ""


async def test_the_import_wizard_takes_a_semicolon_file_with_a_bom_to_its_report(
    browser: Any, kernel: Any, crm_site: Any, assert_accessible: Any, run_jobs: Any, client: Any, sign_in: Any
) -> None:
    base = crm_site["base"]
    page = await _signed_in(browser, kernel, crm_site)
    await page.goto(f"{base}/crm/leads")
    await page.click("text=Import CSV")
    await page.wait_for_url(f"{base}/crm/leads/import")
    await assert_accessible(page)

    # Step 1: upload.
    await page.set_input_files("#file", files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": IMPORT_FILE}])
    await page.click("#import-upload button[type=submit]")
    await page.wait_for_url(re.compile(rf"{re.escape(base)}/crm/leads/import/[0-9a-f-]+$"))
    import_id = page.url.rsplit("/", 1)[1]
    assert "semicolons" in (await page.text_content("main") or "")

    # Step 2: the guessed mapping; the unguessed note column is mapped by hand.
    assert await page.input_value("#mapping-0") == "first_name"
    assert await page.input_value("#mapping-1") == "last_name"
    assert await page.input_value("#mapping-2") == "email"
    assert await page.input_value("#mapping-3") == "company"
    assert await page.input_value("#mapping-4") == "estimated_value"
    assert await page.input_value("#mapping-5") == ""
    await page.select_option("#mapping-5", "notes")
    # Two columns for one field: the API's error shows under the second select box.
    await page.select_option("#mapping-3", "email")
    await page.click("text=Preview the first rows")
    await page.wait_for_selector("select[aria-invalid=true]")
    assert "mapped twice" in (await page.text_content("#import-mapping") or "")
    assert await page.is_hidden("#import-start-section")
    await page.select_option("#mapping-3", "company")
    await assert_accessible(page)

    # Step 3: the preview, the bad row marked with its problem.
    await page.click("text=Preview the first rows")
    await page.wait_for_selector("#import-preview:not([hidden]) #preview tbody tr")
    rows = page.locator("#preview tbody tr")
    assert await rows.count() == 3
    assert "Ada Lovelace" in (await rows.nth(0).text_content() or "")
    assert "1200.50" in (await rows.nth(0).text_content() or "")
    assert await rows.nth(1).get_attribute("class") == "invalid"
    assert "email" in (await rows.nth(1).locator(".problems").text_content() or "")
    assert "2 ready, 1 with problems" in (await page.text_content("#preview-summary") or "")
    await assert_accessible(page)

    # Step 4: the duplicate policy, start, the progress bar; a worker runs the job meanwhile.
    await page.check("#policy-update")
    await page.click("text=Start the import")
    await page.wait_for_selector("#import-progress progress")
    await assert_accessible(page)
    await run_jobs()

    # Step 5: the report, drawn once the job is over.
    await page.wait_for_selector("#import-report", timeout=15_000)
    assert await page.text_content("#count-created") == "2"
    assert await page.text_content("#count-rejected") == "1"
    assert await page.text_content("#count-skipped") == "0"
    assert "not-an-email" in (await page.text_content("#rejects") or "")
    await assert_accessible(page)
    href = await page.get_attribute("#rejects-download", "href")
    assert href == f"/api/v1/crm/imports/{import_id}/rejects.csv"
    async with page.expect_download() as downloading:
        await page.click("#rejects-download")
    download = await downloading.value
    assert download.suggested_filename == f"rejected-{import_id}.csv"
    saved = await download.path()
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
    rejected = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rejected[0] == ["line", "Vorname", "Nachname", "E-Mail", "Firma", "Betrag", "Bemerkung", "errors"]
    assert rejected[1][:4] == ["3", "Bad", "Row", "not-an-email"]
    assert "email" in rejected[1][-1]

    # What the API says was imported, with the policy chosen on the page.
    api = await sign_in(crm_site["tenant"], "manager")
    record = (await client.get(f"/api/v1/crm/imports/{import_id}", headers=api)).json()
    assert (record["status"], record["duplicate_policy"], record["mapping"]["5"]) == ("done", "update", "notes")
    leads = (await client.get("/api/v1/crm/leads?sort=name", headers=api)).json()["items"]
    assert [lead["name"] for lead in leads] == ["Ada Lovelace", "Grace Hopper"]
    notes = (await client.get(f"/api/v1/crm/leads/{leads[0]['id']}/activities", headers=api)).json()
    assert any(n["body"] == "met at the fair" for n in notes)
