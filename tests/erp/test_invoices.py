"""Invoices through the API: drafts with computed totals, issuing with gapless numbers, immutability,
credit notes, voiding, sending, due dates and the daily overdue run."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from uuid import UUID

import facturx
from sqlalchemy import text


async def test_draft_totals_are_computed_and_issue_freezes_it(erp, drain_events, kernel):
    vat = await erp.tax()
    customer = await erp.customer(payment_terms_days=14)
    draft = await erp.draft(
        customer["id"],
        [
            {"description": "Design", "quantity": "3", "unit": "h", "unit_price": "80", "tax_rate_ids": [vat["id"]]},
            {
                "description": "Hosting",
                "quantity": "1",
                "unit_price": "19.99",
                "discount_kind": "percent",
                "discount_value": "10",
                "tax_rate_ids": [vat["id"]],
            },
        ],
        discount_kind="fixed",
        discount_value="5.00",
    )
    assert draft["status"] == "draft"
    assert draft["number"] is None
    assert draft["subtotal"] == "257.99"
    assert draft["discount_total"] == "5.00"
    # The 5.00 discount is shared 4.65 / 0.35 by amount; VAT 20 % on 235.35 and 17.64: 47.07 + 3.53
    assert draft["tax_total"] == "50.60"
    assert draft["total"] == "303.59"

    issued = await erp.call("POST", f"/invoices/{draft['id']}/issue")
    assert issued["status"] == "issued"
    assert re.fullmatch(rf"INV-{dt.date.today().year}-0001", issued["number"])
    assert issued["due_date"] == (dt.date.fromisoformat(issued["issue_date"]) + dt.timedelta(days=14)).isoformat()
    assert issued["customer"]["name"] == "Acme GmbH"
    assert issued["public_url"].endswith(tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))

    body = {"customer_id": customer["id"], "lines": [{"description": "Other", "unit_price": "1"}]}
    response = await erp.client.put(f"/api/v1/erp/invoices/{draft['id']}", json=body, headers=erp.headers)
    assert response.status_code == 409
    assert response.json()["type"] == "urn:inopsio:problem:invoice-not-draft"
    again = await erp.client.post(f"/api/v1/erp/invoices/{draft['id']}/issue", headers=erp.headers)
    assert again.status_code == 409
    deleted = await erp.client.delete(f"/api/v1/erp/invoices/{draft['id']}", headers=erp.headers)
    assert deleted.status_code == 409

    async with kernel.db.session(erp.tenant.id) as session:
        types = (await session.execute(text("SELECT type FROM event_log ORDER BY id"))).scalars().all()
    assert "erp.invoice.issued" in types


async def test_bad_lines_are_refused_with_pointers_and_nothing_is_stored(erp):
    customer = await erp.customer()
    cases = [
        ({"description": "x", "quantity": "-1", "unit_price": "1"}, "/lines/0/quantity"),
        ({"description": "x", "quantity": "1", "unit_price": "-5"}, "/lines/0/unit_price"),
        ({"description": "x", "quantity": "1"}, "/lines/0/unit_price"),
        ({"description": "", "quantity": "1", "unit_price": "1"}, "/lines/0/description"),
        (
            {"description": "x", "unit_price": "10", "discount_kind": "fixed", "discount_value": "11"},
            "/lines/0/discount_value",
        ),
    ]
    for line, pointer in cases:
        response = await erp.client.post(
            "/api/v1/erp/invoices", json={"customer_id": customer["id"], "lines": [line]}, headers=erp.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["pointer"] == pointer
    unknown = await erp.client.post(
        "/api/v1/erp/invoices",
        json={"customer_id": customer["id"], "currency": "ZZZ", "lines": []},
        headers=erp.headers,
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "urn:inopsio:problem:unknown-currency"
    too_many = [{"description": "x", "unit_price": "1"}] * 1001
    response = await erp.client.post(
        "/api/v1/erp/invoices", json={"customer_id": customer["id"], "lines": too_many}, headers=erp.headers
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["pointer"] == "/lines"
    assert await erp.call("GET", "/invoices") == []


async def test_a_thousand_lines_are_accepted(erp):
    customer = await erp.customer()
    lines = [{"description": f"Item {i}", "quantity": "1", "unit_price": "0.01"} for i in range(1000)]
    draft = await erp.draft(customer["id"], lines)
    assert draft["total"] == "10.00"
    assert len(draft["lines"]) == 1000


async def test_concurrent_issues_give_a_gapless_duplicate_free_sequence(erp):
    customer = await erp.customer()
    drafts = [await erp.draft(customer["id"]) for _ in range(100)]

    async def issue(invoice_id: str) -> str:
        response = await erp.client.post(f"/api/v1/erp/invoices/{invoice_id}/issue", headers=erp.headers)
        assert response.status_code == 200, response.text
        return response.json()["number"]

    numbers = await asyncio.gather(*(issue(d["id"]) for d in drafts))
    year = dt.date.today().year
    assert sorted(numbers) == [f"INV-{year}-{n:04d}" for n in range(1, 101)]


async def test_number_pattern_is_configurable(erp):
    await erp.call("PATCH", "/settings", json={"invoice_pattern": "R{YY}/{000000}"})
    customer = await erp.customer()
    issued = await erp.issued(customer["id"])
    assert issued["number"] == f"R{dt.date.today().year % 100:02d}/000001"
    bad = await erp.client.patch("/api/v1/erp/settings", json={"invoice_pattern": "no counter"}, headers=erp.headers)
    assert bad.status_code == 400


async def test_credit_note_corrects_an_issued_invoice(erp):
    customer = await erp.customer()
    issued = await erp.issued(customer["id"])
    partial = await erp.call(
        "POST",
        f"/invoices/{issued['id']}/credit-notes",
        201,
        json={"lines": [{"description": "Goodwill", "unit_price": "50"}], "reason": "late delivery"},
    )
    assert partial["kind"] == "credit_note"
    assert partial["number"].startswith("CN-")
    assert partial["credited_invoice_id"] == issued["id"]
    after = await erp.call("GET", f"/invoices/{issued['id']}")
    assert after["balance"] == "150.00"
    too_much = await erp.client.post(
        f"/api/v1/erp/invoices/{issued['id']}/credit-notes",
        json={"lines": [{"description": "x", "unit_price": "150.01"}]},
        headers=erp.headers,
    )
    assert too_much.status_code == 422
    await erp.call(
        "POST",
        f"/invoices/{issued['id']}/credit-notes",
        201,
        json={"lines": [{"description": "x", "unit_price": "150"}]},
    )
    assert (await erp.call("GET", f"/invoices/{issued['id']}"))["status"] == "credited"


async def test_full_credit_note_copies_lines_and_taxes(erp):
    vat = await erp.tax(rate="19")
    customer = await erp.customer()
    issued = await erp.issued(
        customer["id"], [{"description": "Box", "quantity": "2", "unit_price": "10", "tax_rate_ids": [vat["id"]]}]
    )
    note = await erp.call("POST", f"/invoices/{issued['id']}/credit-notes", 201, json={})
    assert note["total"] == issued["total"]
    assert note["tax_total"] == issued["tax_total"]
    assert (await erp.call("GET", f"/invoices/{issued['id']}"))["status"] == "credited"


async def test_void_only_unpaid_issued_invoices(erp):
    customer = await erp.customer()
    draft = await erp.draft(customer["id"])
    response = await erp.client.post(f"/api/v1/erp/invoices/{draft['id']}/void", headers=erp.headers)
    assert response.status_code == 409
    issued = await erp.call("POST", f"/invoices/{draft['id']}/issue")
    voided = await erp.call("POST", f"/invoices/{issued['id']}/void")
    assert voided["status"] == "void"
    assert voided["balance"] == "0.00"
    next_one = await erp.issued(customer["id"])
    assert next_one["number"].endswith("0002")  # the voided number stays taken: no gap, no reuse


async def test_member_cannot_issue(erp, sign_in, client):
    customer = await erp.customer()
    draft = await erp.draft(customer["id"])
    member = await sign_in(erp.tenant, "member")
    response = await client.post(f"/api/v1/erp/invoices/{draft['id']}/issue", headers=member)
    assert response.status_code == 403


async def test_send_emails_the_customer_link_with_the_factur_x_pdf_attached(erp, run_jobs, smtp_sink):
    customer = await erp.customer(email="pay@customer.example")
    issued = await erp.issued(customer["id"])
    await erp.call("POST", f"/invoices/{issued['id']}/send", json={})
    await run_jobs()
    [message] = smtp_sink.to("pay@customer.example")
    assert issued["number"] in message["Subject"]
    assert issued["public_url"] in message.get_body(("plain",)).get_content()
    assert issued["number"] in message.get_body(("html",)).get_content()
    [attachment] = message.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"{issued['number']}.pdf"
    pdf = attachment.get_content()
    assert pdf.startswith(b"%PDF")
    # Factur-X: the EN 16931 XML travels inside the PDF.
    filename, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False)
    assert filename == "factur-x.xml"
    assert issued["number"].encode() in xml


async def test_a_send_that_rolls_back_mails_nothing(erp, kernel, run_jobs, smtp_sink):
    from inopsio_erp.invoices import services

    customer = await erp.customer(email="never@customer.example")
    issued = await erp.issued(customer["id"])

    class Abort(Exception):
        pass

    try:
        async with kernel.db.session(erp.tenant.id) as session:
            await services.send(kernel, session, erp.tenant, UUID(issued["id"]))
            raise Abort
    except Abort:
        pass
    await run_jobs()
    assert smtp_sink.to("never@customer.example") == []
    assert (await erp.call("GET", f"/invoices/{issued['id']}"))["sent_at"] is None


async def test_daily_run_marks_overdue_and_sends_reminders_once(erp, kernel, run_jobs, smtp_sink, drain_events):
    await erp.call("PATCH", "/settings", json={"reminder_days": [3, 10]})
    customer = await erp.customer(email="late@customer.example", payment_terms_days=7)
    issued = await erp.issued(customer["id"])
    due = dt.date.fromisoformat(issued["due_date"])
    for day, expected_mails in (
        (due, 0),
        (due + dt.timedelta(days=1), 0),
        (due + dt.timedelta(days=4), 1),
        (due + dt.timedelta(days=5), 1),
        (due + dt.timedelta(days=11), 2),
    ):
        await kernel.jobs.enqueue("erp.tenant_daily", tenant_id=erp.tenant.id, day=day.isoformat())
        await run_jobs()
        assert len(smtp_sink.to("late@customer.example")) == expected_mails, day
    invoice = await erp.call("GET", f"/invoices/{issued['id']}")
    assert invoice["status"] == "overdue"
    assert invoice["overdue_since"] == (due + dt.timedelta(days=1)).isoformat()
    async with kernel.db.session(erp.tenant.id) as session:
        overdue_events = (
            await session.execute(text("SELECT count(*) FROM event_log WHERE type = 'erp.invoice.overdue'"))
        ).scalar_one()
    assert overdue_events == 1
    assert "overdue" in smtp_sink.to("late@customer.example")[0]["Subject"]


async def test_daily_run_is_scheduled_per_tenant_only_where_the_erp_is_on(
    erp, client, kernel, make_tenant, sign_in, run_jobs
):
    from inopsio.jobs.tenants import fan_out
    from inopsio.tenancy.schemas import TenantSettingsPatch

    definition = kernel.jobs.definitions["erp.tenant_daily"]
    assert definition.per_tenant
    assert definition.cron == {"hour": {5}, "minute": {10}, "second": 0}
    switched_off = await make_tenant()
    books_off = type(erp)(client, switched_off, await sign_in(switched_off, "owner"))
    late = []
    for books in (erp, books_off):
        customer = await books.customer(email="daily-run@customer.example")
        issued = await books.issued(customer["id"])
        async with kernel.db.session(books.tenant.id) as session:
            await session.execute(
                text("UPDATE erp_invoices SET due_date = :due WHERE id = :id"),
                {"due": dt.date.today() - dt.timedelta(days=2), "id": issued["id"]},
            )
        late.append(issued["id"])
    await kernel.tenants.update_settings(switched_off.id, TenantSettingsPatch(disabled_modules=["erp"]))
    scheduled = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert await fan_out(kernel, "erp.tenant_daily", scheduled) >= 1
    assert await fan_out(kernel, "erp.tenant_daily", scheduled) == 0  # one run per tenant and scheduled time
    result = await run_jobs()
    assert result.failed == 0
    assert (await erp.call("GET", f"/invoices/{late[0]}"))["status"] == "overdue"
    async with kernel.db.session(switched_off.id) as session:
        status = await session.execute(text("SELECT status FROM erp_invoices WHERE id = :id"), {"id": late[1]})
        assert status.scalar_one() == "issued"  # the ERP is off there: no daily run


async def test_recurring_template_issues_and_emails_itself(erp, kernel, run_jobs, smtp_sink):
    customer = await erp.customer(email="monthly@customer.example")
    start = dt.date(2026, 1, 31)
    template = await erp.call(
        "POST",
        "/recurring",
        201,
        json={
            "interval": "monthly",
            "start_on": start.isoformat(),
            "invoice": {"customer_id": customer["id"], "lines": [{"description": "Subscription", "unit_price": "49"}]},
        },
    )
    assert template["next_run"] == "2026-01-31"
    for _ in range(2):  # a second run on the same day issues nothing more
        await kernel.jobs.enqueue("erp.tenant_daily", tenant_id=erp.tenant.id, day="2026-03-01")
        await run_jobs()
    invoices = await erp.call("GET", "/invoices", params={"customer_id": customer["id"]})
    assert len(invoices) == 2  # 31 January and 28 February
    assert {i["status"] for i in invoices} == {"issued"}
    [listed] = await erp.call("GET", "/recurring")
    assert listed["next_run"] == "2026-03-31"
    assert listed["runs"] == 2
    assert len(smtp_sink.to("monthly@customer.example")) == 2


async def test_a_broken_recurring_template_does_not_stop_the_others(erp, kernel, run_jobs):
    customer = await erp.customer()
    body = {"customer_id": customer["id"], "lines": [{"description": "Plan", "unit_price": "10"}]}
    broken = await erp.call(
        "POST", "/recurring", 201, json={"interval": "yearly", "start_on": "2026-01-01", "invoice": body}
    )
    await erp.call("POST", "/recurring", 201, json={"interval": "yearly", "start_on": "2026-01-01", "invoice": body})
    async with kernel.db.session(erp.tenant.id) as session:
        await session.execute(
            text("UPDATE erp_recurring_templates SET body = '{}' WHERE id = :id"), {"id": broken["id"]}
        )
    await kernel.jobs.enqueue("erp.tenant_daily", tenant_id=erp.tenant.id, day="2026-06-01")
    result = await run_jobs()
    assert result.failed == 0
    assert result.retried == 0
    invoices = await erp.call("GET", "/invoices")
    assert [(i["status"], i["number"][-4:]) for i in invoices] == [("issued", "0001")]
    templates = {t["id"]: t for t in await erp.call("GET", "/recurring")}
    assert templates[broken["id"]]["runs"] == 0
