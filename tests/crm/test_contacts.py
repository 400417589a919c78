"""Contacts and companies, and converting a lead into contact + company + deal in one transaction."""

from __future__ import annotations

from typing import Any

LEADS = "/api/v1/crm/leads"


async def test_companies_and_contacts_crud(client: Any, make_tenant: Any, member: Any) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    owner, outsider = await member(tenant), await member(other)
    company = await client.post(
        "/api/v1/crm/companies",
        json={"name": "Acme", "domain": "ACME.example", "phone": "+41 44 668 18 00"},
        headers=owner.headers,
    )
    assert company.status_code == 201, company.text
    assert company.json()["domain"] == "acme.example"
    company_id = company.json()["id"]
    foreign = await client.post("/api/v1/crm/companies", json={"name": "Theirs"}, headers=outsider.headers)
    contact = await client.post(
        "/api/v1/crm/contacts",
        json={"name": "Wile E. Coyote", "email": "wile@acme.example", "company_id": company_id},
        headers=owner.headers,
    )
    assert contact.status_code == 201, contact.text
    bad = await client.post(
        "/api/v1/crm/contacts",
        json={"name": "X", "email": "nope", "company_id": foreign.json()["id"]},
        headers=owner.headers,
    )
    assert bad.status_code == 422
    assert {e["pointer"] for e in bad.json()["errors"]} == {"/email", "/company_id"}
    listed = await client.get(f"/api/v1/crm/contacts?q=coyo&company_id={company_id}", headers=owner.headers)
    assert [c["name"] for c in listed.json()] == ["Wile E. Coyote"]
    assert [c["name"] for c in (await client.get("/api/v1/crm/companies?q=ac", headers=owner.headers)).json()] == [
        "Acme"
    ]
    patched = await client.patch(
        f"/api/v1/crm/contacts/{contact.json()['id']}", json={"title": "Genius"}, headers=owner.headers
    )
    assert patched.json()["title"] == "Genius"
    assert (await client.delete(f"/api/v1/crm/companies/{company_id}", headers=owner.headers)).status_code == 204
    after = await client.get(f"/api/v1/crm/contacts/{contact.json()['id']}", headers=owner.headers)
    assert after.json()["company_id"] is None
    assert (await client.get(f"/api/v1/crm/companies/{company_id}", headers=outsider.headers)).status_code == 404


async def test_lead_converts_into_contact_company_and_deal(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    lead = await new_lead(
        owner.headers,
        name="Ada Lovelace",
        email="ada@engine.example",
        company="Analytical Engines",
        estimated_value="2500",
        currency="GBP",
        owner_id=owner.user_id,
    )
    response = await client.post(f"{LEADS}/{lead['id']}/convert", json={}, headers=owner.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["lead"]["status"] == "converted"
    assert result["contact"]["email"] == "ada@engine.example"
    assert result["contact"]["lead_id"] == lead["id"]
    assert result["company"]["name"] == "Analytical Engines"
    deal = result["deal"]
    assert deal["value"] == "2500.00" or deal["value"] == "2500"
    assert deal["currency"] == "GBP"
    assert deal["contact_id"] == result["contact"]["id"]
    assert deal["company_id"] == result["company"]["id"]
    pipelines = (await client.get("/api/v1/crm/pipelines", headers=owner.headers)).json()
    assert deal["stage_id"] == pipelines[0]["stages"][0]["id"]
    again = await client.post(f"{LEADS}/{lead['id']}/convert", json={}, headers=owner.headers)
    assert again.status_code == 409
    # A second lead of the same company joins the existing company.
    second = await new_lead(owner.headers, name="Charles Babbage", company="analytical engines")
    joined = await client.post(f"{LEADS}/{second['id']}/convert", json={"create_deal": False}, headers=owner.headers)
    assert joined.json()["company"]["id"] == result["company"]["id"]
    assert joined.json()["deal"] is None
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=owner.headers)).json()
    assert timeline[0]["kind"] == "converted"


async def test_conversion_is_all_or_nothing(client: Any, make_tenant: Any, member: Any, new_lead: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    lead = await new_lead(owner.headers, name="Half Done", company="Nowhere Ltd")
    other_pipeline = await client.post("/api/v1/crm/pipelines", json={"name": "Partners"}, headers=owner.headers)
    sales = (await client.get("/api/v1/crm/pipelines", headers=owner.headers)).json()[0]
    # A stage of another pipeline: the deal is refused, so no contact or company may remain.
    response = await client.post(
        f"{LEADS}/{lead['id']}/convert",
        json={"pipeline_id": sales["id"], "stage_id": other_pipeline.json()["stages"][0]["id"]},
        headers=owner.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"pointer": "/stage_id", "detail": "no such stage in this pipeline"}]
    assert (await client.get("/api/v1/crm/contacts", headers=owner.headers)).json() == []
    assert (await client.get("/api/v1/crm/companies", headers=owner.headers)).json() == []
    assert (await client.get(f"{LEADS}/{lead['id']}", headers=owner.headers)).json()["status"] == "new"
