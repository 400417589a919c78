"""Reports: receivables ageing by days past due, revenue by month and by customer (credit notes
subtracted, currencies apart), and their CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import text


async def backdate(kernel, tenant, invoice_id: str, issue: dt.date, due: dt.date) -> None:
    async with kernel.db.session(tenant.id) as session:
        await session.execute(
            text("UPDATE erp_invoices SET issue_date = :i, due_date = :d WHERE id = :id"),
            {"i": issue, "d": due, "id": invoice_id},
        )


async def test_ageing_buckets_and_csv(erp, kernel):
    acme = await erp.customer(name="Acme")
    zeta = await erp.customer(name="=Zeta", currency="USD")
    today = dt.date.today()
    for days_late, price in ((-5, "100"), (10, "200"), (45, "300"), (75, "400"), (120, "500")):
        invoice = await erp.issued(acme["id"], [{"description": "x", "unit_price": price}])
        await backdate(
            kernel, erp.tenant, invoice["id"], today - dt.timedelta(days=200), today - dt.timedelta(days=days_late)
        )
    paid = await erp.issued(acme["id"], [{"description": "paid", "unit_price": "999"}])
    await erp.call("POST", f"/invoices/{paid['id']}/payments", 201, json={"amount": "999"})
    dollars = await erp.issued(zeta["id"], [{"description": "x", "unit_price": "50"}])
    await erp.call("POST", f"/invoices/{dollars['id']}/payments", 201, json={"amount": "20"})

    rows = await erp.call("GET", "/reports/ageing")
    assert [(r["customer"], r["currency"]) for r in rows] == [("=Zeta", "USD"), ("Acme", "EUR")]
    acme_row = rows[1]
    assert (
        acme_row["current"],
        acme_row["days_1_30"],
        acme_row["days_31_60"],
        acme_row["days_61_90"],
        acme_row["over_90"],
    ) == ("100.00", "200.00", "300.00", "400.00", "500.00")
    assert acme_row["total"] == "1500.00"
    assert rows[0]["current"] == "30.00"

    response = await erp.client.get("/api/v1/erp/reports/ageing", params={"format": "csv"}, headers=erp.headers)
    assert response.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert parsed[0]["customer"] == "'=Zeta"  # no formula injection into spreadsheets
    assert parsed[1]["over_90"] == "500.00"


async def test_revenue_by_month_and_customer_subtracts_credit_notes(erp, kernel):
    vat = await erp.tax()
    acme = await erp.customer(name="Acme")
    beta = await erp.customer(name="Beta")
    a = await erp.issued(acme["id"], [{"description": "x", "unit_price": "100", "tax_rate_ids": [vat["id"]]}])
    b = await erp.issued(beta["id"], [{"description": "x", "unit_price": "50", "tax_rate_ids": [vat["id"]]}])
    last_year = dt.date.today().year - 1
    await backdate(kernel, erp.tenant, b["id"], dt.date(last_year, 1, 15), dt.date(last_year, 2, 14))
    await erp.call(
        "POST",
        f"/invoices/{a['id']}/credit-notes",
        201,
        json={"lines": [{"description": "c", "unit_price": "10", "tax_rate_ids": [vat["id"]]}]},
    )
    draft = await erp.draft(acme["id"])  # drafts never count
    assert draft["status"] == "draft"
    year_start, today = dt.date(last_year, 1, 1).isoformat(), dt.date.today().isoformat()
    months = await erp.call("GET", "/reports/revenue", params={"by": "month", "from": year_start, "to": today})
    by_month = {r["key"]: r for r in months}
    assert by_month[f"{last_year}-01"]["total"] == "60.00"
    this_month = dt.date.today().strftime("%Y-%m")
    assert (by_month[this_month]["net"], by_month[this_month]["tax"], by_month[this_month]["total"]) == (
        "90.00",
        "18.00",
        "108.00",
    )
    assert by_month[this_month]["invoices"] == 1
    customers = await erp.call("GET", "/reports/revenue", params={"by": "customer", "from": year_start, "to": today})
    assert [(r["label"], r["total"]) for r in customers] == [("Acme", "108.00"), ("Beta", "60.00")]
    response = await erp.client.get(
        "/api/v1/erp/reports/revenue",
        params={"by": "customer", "format": "csv", "from": year_start, "to": today},
        headers=erp.headers,
    )
    assert response.text.splitlines()[0] == "key,label,currency,invoices,net,tax,total"
    bad = await erp.client.get(
        "/api/v1/erp/reports/revenue", params={"from": "2026-12-31", "to": "2026-01-01"}, headers=erp.headers
    )
    assert bad.status_code == 422


async def test_reports_need_their_permission(erp, sign_in, client):
    member = await sign_in(erp.tenant, "member")
    assert (await client.get("/api/v1/erp/reports/ageing", headers=member)).status_code == 403
