"""CSV import (upload, mapping guess, preview, job with progress, rejects report) and CSV/XLSX export."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from sqlalchemy import select

from inopsio.events.models import EventRecord
from inopsio_crm.leads.models import LeadActivity

IMPORTS = "/api/v1/crm/imports"
LEADS = "/api/v1/crm/leads"
CSV_HEADERS = {"Content-Type": "text/csv"}


async def upload(client: Any, headers: dict[str, str], content: bytes, name: str = "leads.csv") -> Any:
    return await client.post(f"{IMPORTS}?filename={name}", content=content, headers={**headers, **CSV_HEADERS})


async def run_import(client: Any, headers: dict[str, str], import_id: str, run_jobs: Any, **options: Any) -> Any:
    started = await client.post(f"{IMPORTS}/{import_id}/start", json=options, headers=headers)
    assert started.status_code == 202, started.text
    await run_jobs()
    job = await client.get(f"/api/v1/jobs/{started.json()['job_id']}", headers=headers)
    assert job.json()["status"] == "complete", job.text
    assert job.json()["progress"] == 100
    return (await client.get(f"{IMPORTS}/{import_id}", headers=headers)).json()


async def test_semicolon_latin1_file_with_bom_free_quoted_newlines_is_mapped_and_imported(
    client: Any, make_tenant: Any, member: Any, run_jobs: Any
) -> None:
    tenant = await make_tenant(settings={"locale": "de_CH", "currency": "CHF"})
    manager = await member(tenant, "manager")
    rep = await member(tenant, "member")
    rep_email = (await client.get("/api/v1/me", headers=rep.headers)).json()["email"]
    await client.post(
        "/api/v1/crm/custom-fields",
        json={"key": "industry", "label": "Branche", "type": "choice", "choices": ["Retail", "Banking"]},
        headers=(await member(tenant, "admin")).headers,
    )
    text = (
        "Vorname;Nachname;E-Mail;Telefon;Firma;Betrag;Notes;Owner;Branche;Unused\n"
        f"Jürg;Müller;juerg@example.ch;044 668 18 00;Müller AG;1'200,50;"
        f'"Line one\nline two; with semicolon";{rep_email};retail;x\n'
        "Zoë;Brändli;not-an-email;;;abc;;;Mining;y\n"
        'René;Favre;rene@example.ch;+41 21 123 45 67;"=HYPERLINK(""http://evil"")";;;;;z\n'
    )
    response = await upload(client, manager.headers, text.encode("latin-1"))
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["encoding"], record["delimiter"], record["total_rows"]) == ("latin-1", ";", 3)
    assert record["mapping"] == {
        "0": "first_name",
        "1": "last_name",
        "2": "email",
        "3": "phone",
        "4": "company",
        "5": "estimated_value",
        "6": "notes",
        "7": "owner_email",
        "8": "custom.industry",
    }
    preview = await client.post(f"{IMPORTS}/{record['id']}/preview", json={}, headers=manager.headers)
    assert preview.status_code == 200, preview.text
    rows = preview.json()
    assert rows[0]["values"]["name"] == "Jürg Müller"
    assert rows[0]["values"]["phone"] == "+41446681800"
    assert rows[0]["values"]["estimated_value"] == "1200.50"
    assert rows[0]["values"]["currency"] == "CHF"
    assert rows[0]["errors"] == []
    assert {e.split(":")[0] for e in rows[1]["errors"]} == {"email", "estimated_value", "custom/industry"}
    report = await run_import(client, manager.headers, record["id"], run_jobs)
    assert (report["status"], report["created"], report["rejected"]) == ("done", 2, 1)
    leads = (await client.get(f"{LEADS}?sort=name", headers=manager.headers)).json()["items"]
    assert [lead["name"] for lead in leads] == ["Jürg Müller", "René Favre"]
    assert leads[0]["owner_id"] == rep.user_id
    assert leads[0]["custom"] == {"industry": "Retail"}
    notes = (await client.get(f"{LEADS}/{leads[0]['id']}/activities", headers=manager.headers)).json()
    assert any(a["body"] == "Line one\nline two; with semicolon" for a in notes)
    rejects = await client.get(f"{IMPORTS}/{record['id']}/rejects.csv", headers=manager.headers)
    assert rejects.status_code == 200
    rejected = list(csv.reader(io.StringIO(rejects.text), delimiter=";"))
    assert rejected[0][0] == "line"
    assert rejected[0][-1] == "errors"
    assert rejected[1][0] == "3"
    assert rejected[1][1] == "Zoë"
    assert "email" in rejected[1][-1]
    again = await client.post(f"{IMPORTS}/{record['id']}/start", json={}, headers=manager.headers)
    assert again.status_code == 409


async def test_duplicate_policies_and_all_or_nothing(
    client: Any, make_tenant: Any, member: Any, run_jobs: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    await new_lead(manager.headers, name="Existing", email="dup@example.com", title="Old title")
    content = (
        "\ufeffname,email,title,tags\n"
        "Existing Again,dup@example.com,New title,a|b\n"
        "Fresh,fresh@example.com,,\n"
        "Fresh Twin,FRESH@example.com,Twin,\n"
    ).encode()

    async def imported(**options: Any) -> dict[str, Any]:
        record = (await upload(client, manager.headers, content)).json()
        assert record["encoding"] == "utf-8"
        assert record["header"][0] == "name"
        return dict(await run_import(client, manager.headers, record["id"], run_jobs, **options))

    skip = await imported(duplicate_policy="skip")
    assert (skip["created"], skip["skipped"], skip["updated"]) == (1, 2, 0)
    update = await imported(duplicate_policy="update")
    assert (update["created"], update["updated"]) == (0, 2)
    existing = (await client.get(f"{LEADS}?q=dup@example.com", headers=manager.headers)).json()["items"][0]
    assert existing["title"] == "New title"
    assert existing["tags"] == ["a", "b"]
    create = await imported(duplicate_policy="create")
    assert create["created"] == 3
    bad = b"name,email\nGood,good@example.com\n,missing-name@example.com\n"
    record = (await upload(client, manager.headers, bad)).json()
    strict = await run_import(client, manager.headers, record["id"], run_jobs, all_or_nothing=True)
    assert (strict["created"], strict["rejected"]) == (0, 1)
    assert (await client.get(f"{LEADS}?q=good", headers=manager.headers)).json()["items"] == []


async def test_bad_files_and_oversized_uploads_are_refused(
    client: Any, make_tenant: Any, member: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    staff = await member(tenant, "member")
    assert (await upload(client, staff.headers, b"name\nx\n")).status_code == 403
    broken = await upload(client, manager.headers, b'name,email\n"unterminated,a@b.c\nnext,row\n')
    assert broken.status_code == 422
    assert broken.json()["type"] == "urn:inopsio:problem:invalid-csv"
    assert (await upload(client, manager.headers, b"")).status_code == 422
    no_name = (await upload(client, manager.headers, b"colour,size\nred,1\n")).json()
    start = await client.post(f"{IMPORTS}/{no_name['id']}/start", json={}, headers=manager.headers)
    assert start.status_code == 422
    assert start.json()["type"] == "urn:inopsio:problem:invalid-mapping"
    wrong = await client.post(
        f"{IMPORTS}/{no_name['id']}/start",
        json={"mapping": {"0": "name", "7": "email", "1": "password"}},
        headers=manager.headers,
    )
    assert {e["pointer"] for e in wrong.json()["errors"]} == {"/mapping/7", "/mapping/1"}
    await kernel.tenants.set_quotas(tenant.id, {"upload_bytes": 1000})
    too_big = await upload(client, manager.headers, b"name\n" + b"x" * 5000)
    assert too_big.status_code == 413
    assert too_big.json()["quota"] == "upload_bytes"

    async def endless() -> Any:  # no Content-Length: refused while streaming, never read whole
        for _ in range(1000):
            yield b"y" * 1024

    streamed = await client.post(IMPORTS, content=endless(), headers={**manager.headers, **CSV_HEADERS})
    assert streamed.status_code == 413


async def test_export_as_csv_and_xlsx_neutralises_formulas(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    staff = await member(tenant, "member")
    await new_lead(manager.headers, name='=HYPERLINK("http://evil","x")', company="@SUM(A1)", source="fair")
    await new_lead(manager.headers, name="Plain Person", company="-2+3", source="web")
    assert (await client.get(f"{LEADS}/export", headers=staff.headers)).status_code == 403
    response = await client.get(f"{LEADS}/export?source=fair", headers=manager.headers)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 1
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil","x")'
    assert rows[0]["company"] == "'@SUM(A1)"
    xlsx = await client.get(f"{LEADS}/export?format=xlsx", headers=manager.headers)
    assert xlsx.status_code == 200
    with zipfile.ZipFile(io.BytesIO(xlsx.content)) as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        strings = book.read("xl/sharedStrings.xml").decode()
    assert "<f>" not in sheet  # no formula cell anywhere
    assert "&apos;-2+3" in strings or "'-2+3" in strings


async def test_import_creates_no_event_per_row_but_records_the_timeline(
    client: Any, make_tenant: Any, member: Any, run_jobs: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    manager = await member(tenant, "manager")
    record = (await upload(client, manager.headers, b"name\nOne\nTwo\n")).json()
    await run_import(client, manager.headers, record["id"], run_jobs)
    lead = (await client.get(f"{LEADS}?q=one", headers=manager.headers)).json()["items"][0]
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=manager.headers)).json()
    (created,) = timeline
    assert created["kind"] == "created"
    assert created["data"] == {"how": "import", "import_id": record["id"], "filename": "leads.csv"}
    assert created["actor_id"] == manager.user_id
    assert created["created_at"] == lead["created_at"]
    # The entry comes from the lead's import_id: no activity row per imported lead, and the same
    # entry (same id) every time it is read.
    again = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=manager.headers)).json()
    assert again == timeline
    async with kernel.db.session(tenant.id) as session:
        types = [r for r in (await session.execute(select(EventRecord.type))).scalars() if r.startswith("crm.")]
        kinds = (await session.execute(select(LeadActivity.kind))).scalars().all()
    assert types == []
    assert "created" not in kinds
    # A note added later comes first; the import's entry stays last.
    noted = await client.post(f"{LEADS}/{lead['id']}/notes", json={"body": "Called"}, headers=manager.headers)
    assert noted.status_code == 201, noted.text
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=manager.headers)).json()
    assert [entry["kind"] for entry in timeline] == ["note", "created"]
    # Merging a lead created by hand into it brings that lead's "created" row along; the import's
    # entry stays, the oldest.
    other = await client.post(LEADS, json={"name": "One Again", "email": "one@x.example"}, headers=manager.headers)
    assert other.status_code == 201, other.text
    merged = await client.post(
        f"{LEADS}/{lead['id']}/merge", json={"duplicate_id": other.json()["id"]}, headers=manager.headers
    )
    assert merged.status_code == 200, merged.text
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=manager.headers)).json()
    assert timeline[0]["kind"] == "merged"
    assert timeline[-1] == created
    assert [entry["data"].get("how") for entry in timeline if entry["kind"] == "created"] == ["manual", "import"]
