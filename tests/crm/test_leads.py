"""Leads through the HTTP API: validation, custom fields, timeline, duplicates and merging."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LEADS = "/api/v1/crm/leads"


async def test_lead_is_created_with_normalised_email_and_e164_phone(
    client: Any, make_tenant: Any, member: Any, drain_events: Any, kernel: Any
) -> None:
    tenant = await make_tenant(settings={"locale": "de_CH"})
    owner = await member(tenant, "owner")
    body = {
        "name": "Anna Muster",
        "email": "Anna.Muster@Example.COM",
        "phone": "044 668 18 00",
        "company": "Muster AG",
        "title": "CFO",
        "source": "website",
        "status": "contacted",
        "estimated_value": "12500.50",
        "currency": "chf",
        "tags": ["vip", "VIP", " zurich "],
        "notes": "Met at the fair",
        "owner_id": owner.user_id,
    }
    response = await client.post(LEADS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    lead = response.json()
    assert lead["email"] == "Anna.Muster@example.com"
    assert lead["phone"] == "+41446681800"
    assert lead["currency"] == "CHF"
    assert lead["estimated_value"] == "12500.50"
    assert lead["tags"] == ["vip", "zurich"]
    assert lead["owner_id"] == owner.user_id
    fetched = await client.get(f"{LEADS}/{lead['id']}", headers=owner.headers)
    assert fetched.json() == lead
    timeline = (await client.get(f"{LEADS}/{lead['id']}/activities", headers=owner.headers)).json()
    assert {a["kind"] for a in timeline} == {"created", "note", "assigned"}
    assert any(a["body"] == "Met at the fair" for a in timeline)
    types = [e.type for e in await _events(kernel, tenant.id)]
    assert "crm.lead.created" in types
    assert "crm.lead.assigned" in types


async def _events(kernel: Any, tenant_id: Any) -> list[Any]:
    from sqlalchemy import select

    from inopsio.events.models import EventRecord

    async with kernel.db.session(tenant_id) as session:
        return list((await session.execute(select(EventRecord).order_by(EventRecord.id))).scalars())


async def test_every_invalid_field_is_reported_at_once_and_nothing_is_stored(
    client: Any, make_tenant: Any, member: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    owner = await member(tenant, "owner")
    stranger = await member(other, "member")
    body = {
        "name": "Bad Data",
        "email": "not-an-email",
        "phone": "12345",
        "estimated_value": "10",
        "currency": "XXY",
        "owner_id": stranger.user_id,
    }
    response = await client.post(LEADS, json=body, headers=owner.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "urn:inopsio:problem:invalid-lead"
    pointers = {e["pointer"] for e in problem["errors"]}
    assert pointers == {"/email", "/phone", "/currency", "/owner_id"}
    # Another tenant's user reads exactly like a user id that exists nowhere.
    unknown = await client.post(
        LEADS, json={"name": "X", "owner_id": "0192f0a0-0000-7000-8000-000000000000"}, headers=owner.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [e for e in problem["errors"] if e["pointer"] == "/owner_id"]
    listing = await client.get(LEADS, headers=owner.headers)
    assert listing.json()["items"] == []


async def test_phone_without_country_code_needs_a_tenant_region(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()  # locale "en": no territory
    owner = await member(tenant)
    response = await client.post(LEADS, json={"name": "Bo", "phone": "044 668 18 00"}, headers=owner.headers)
    assert response.status_code == 422
    assert "country code" in response.json()["errors"][0]["detail"]
    ok = await client.post(LEADS, json={"name": "Bo", "phone": "+41 44 668 18 00"}, headers=owner.headers)
    assert ok.json()["phone"] == "+41446681800"


async def test_malformed_body_is_a_problem_with_a_pointer(client: Any, make_tenant: Any, member: Any) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    response = await client.post(LEADS, json={"name": "", "status": "won"}, headers=owner.headers)
    assert response.status_code == 400
    assert response.json()["errors"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=st.text(max_size=40))
async def test_any_email_text_is_either_accepted_or_a_field_error(
    client: Any, make_tenant: Any, member: Any, email: str
) -> None:
    global _HYPO_HEADERS
    if _HYPO_HEADERS is None:
        _HYPO_HEADERS = (await member(await make_tenant())).headers
    response = await client.post(
        f"{LEADS}?allow_duplicate=true", json={"name": "Hypo", "email": email}, headers=_HYPO_HEADERS
    )
    assert response.status_code in (201, 400, 422), response.text
    if response.status_code == 422:
        assert [e["pointer"] for e in response.json()["errors"]] == ["/email"]


_HYPO_HEADERS: dict[str, str] | None = None


async def test_update_records_status_changes_and_edits_in_the_timeline(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    lead = await new_lead(owner.headers, email="ada@example.com")
    response = await client.patch(
        f"{LEADS}/{lead['id']}",
        json={"status": "qualified", "title": "Countess", "estimated_value": 900, "currency": "EUR"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "qualified"
    assert response.json()["estimated_value"] == "900"
    cleared = await client.patch(f"{LEADS}/{lead['id']}", json={"estimated_value": None}, headers=owner.headers)
    assert cleared.status_code == 422  # a currency without a value
    note = await client.post(f"{LEADS}/{lead['id']}/notes", json={"body": "Called back"}, headers=owner.headers)
    assert note.status_code == 201
    kinds = [a["kind"] for a in (await client.get(f"{LEADS}/{lead['id']}/activities", headers=owner.headers)).json()]
    assert kinds[:3] == ["note", "updated", "status_changed"] or kinds[:3] == ["note", "status_changed", "updated"]
    assert kinds[-1] == "created"


async def test_custom_fields_are_typed_validated_and_filterable(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    admin = await member(tenant, "admin")
    staff = await member(tenant, "member")
    fields = [
        {"key": "industry", "label": "Industry", "type": "choice", "choices": ["Retail", "Banking"]},
        {"key": "employees", "label": "Employees", "type": "number"},
        {"key": "first_contact", "label": "First contact", "type": "date"},
        {"key": "newsletter", "label": "Newsletter", "type": "boolean"},
        {"key": "vat_id", "label": "VAT id", "type": "text", "required": True},
    ]
    for field in fields:
        created = await client.post("/api/v1/crm/custom-fields", json=field, headers=admin.headers)
        assert created.status_code == 201, created.text
    again = await client.post("/api/v1/crm/custom-fields", json=fields[0], headers=admin.headers)
    assert again.status_code == 409
    forbidden = await client.post(
        "/api/v1/crm/custom-fields", json={"key": "x", "label": "X", "type": "text"}, headers=staff.headers
    )
    assert forbidden.status_code == 403
    bad = await client.post(
        LEADS,
        json={
            "name": "Typed",
            "custom": {
                "industry": "Mining",
                "employees": "many",
                "first_contact": "yesterday",
                "newsletter": 1,
                "nope": "x",
            },
        },
        headers=admin.headers,
    )
    assert bad.status_code == 422
    assert {e["pointer"] for e in bad.json()["errors"]} == {
        "/custom/industry",
        "/custom/employees",
        "/custom/first_contact",
        "/custom/newsletter",
        "/custom/nope",
        "/custom/vat_id",
    }
    retail = await new_lead(
        admin.headers,
        name="Shop Owner",
        custom={
            "industry": "Retail",
            "employees": 12,
            "first_contact": "2026-01-05",
            "newsletter": True,
            "vat_id": "CHE-1",
        },
    )
    await new_lead(
        admin.headers,
        name="Bank Person",
        custom={
            "industry": "Banking",
            "employees": 400,
            "first_contact": "2026-06-01",
            "newsletter": False,
            "vat_id": "CHE-2",
        },
    )

    async def names(query: str) -> list[str]:
        response = await client.get(f"{LEADS}?{query}", headers=admin.headers)
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json()["items"])

    assert await names("cf.industry=Retail") == ["Shop Owner"]
    assert await names("cf.newsletter=false") == ["Bank Person"]
    assert await names("cf.employees.min=100") == ["Bank Person"]
    assert await names("cf.employees.max=100&cf.employees.min=1") == ["Shop Owner"]
    assert await names("cf.first_contact.max=2026-03-01") == ["Shop Owner"]
    unknown = await client.get(f"{LEADS}?cf.colour=red", headers=admin.headers)
    assert unknown.status_code == 400
    # Partial update of custom values keeps the others; null removes one that is not required.
    patched = await client.patch(
        f"{LEADS}/{retail['id']}", json={"custom": {"employees": None, "industry": "Banking"}}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["custom"] == {
        "industry": "Banking",
        "first_contact": "2026-01-05",
        "newsletter": True,
        "vat_id": "CHE-1",
    }
    listed = (await client.get("/api/v1/crm/custom-fields", headers=staff.headers)).json()
    employees = next(f for f in listed if f["key"] == "employees")
    deleted = await client.delete(f"/api/v1/crm/custom-fields/{employees['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    lead = (await client.get(f"{LEADS}/{retail['id']}", headers=admin.headers)).json()
    assert "employees" not in lead["custom"]


async def test_duplicates_are_refused_with_the_matching_leads_unless_allowed(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    first = await new_lead(
        owner.headers, name="Grace Hopper", email="grace@navy.example", company="US Navy", phone="+1 202 555 0143"
    )
    by_email = await client.post(LEADS, json={"name": "G. H.", "email": "GRACE@navy.example"}, headers=owner.headers)
    assert by_email.status_code == 409
    problem = by_email.json()
    assert problem["type"] == "urn:inopsio:problem:possible-duplicate"
    assert [m["lead"]["id"] for m in problem["matches"]] == [first["id"]]
    assert problem["matches"][0]["reasons"] == ["email"]
    by_phone = await client.post(LEADS, json={"name": "Someone", "phone": "+12025550143"}, headers=owner.headers)
    assert by_phone.status_code == 409
    assert by_phone.json()["matches"][0]["reasons"] == ["phone"]
    fuzzy = await client.post(LEADS, json={"name": "Hopper, Grace", "company": "US Navy"}, headers=owner.headers)
    assert fuzzy.status_code == 409
    assert fuzzy.json()["matches"][0]["reasons"] == ["name_company"]
    different = await client.post(LEADS, json={"name": "Grace Kelly", "company": "Monaco"}, headers=owner.headers)
    assert different.status_code == 201, different.text
    forced = await client.post(
        f"{LEADS}?allow_duplicate=true",
        json={"name": "Grace Hopper", "email": "grace@navy.example"},
        headers=owner.headers,
    )
    assert forced.status_code == 201
    # Editing into a duplicate is caught too.
    edit = await client.patch(
        f"{LEADS}/{different.json()['id']}", json={"email": "grace@navy.example"}, headers=owner.headers
    )
    assert edit.status_code == 409
    listed = await client.get(f"{LEADS}/{first['id']}/duplicates", headers=owner.headers)
    assert [m["lead"]["id"] for m in listed.json()] == [forced.json()["id"]]


async def test_merge_keeps_both_histories_and_remembers_the_merged_lead(
    client: Any, make_tenant: Any, member: Any, new_lead: Any, kernel: Any
) -> None:
    tenant = await make_tenant()
    owner = await member(tenant)
    survivor = await new_lead(owner.headers, name="Alan Turing", tags=["math"])
    duplicate = await new_lead(
        owner.headers, name="Alan M. Turing", email="alan@bletchley.example", tags=["crypto"], notes="From the park"
    )
    response = await client.post(
        f"{LEADS}/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["email"] == "alan@bletchley.example"
    assert merged["tags"] == ["math", "crypto"]
    timeline = (await client.get(f"{LEADS}/{survivor['id']}/activities", headers=owner.headers)).json()
    assert timeline[0]["kind"] == "merged"
    assert timeline[0]["data"]["merged_id"] == duplicate["id"]
    assert any(a["body"] == "From the park" for a in timeline)
    assert (await client.get(f"{LEADS}/{duplicate['id']}", headers=owner.headers)).status_code == 404
    # A merged lead is not in the bin: it cannot be restored apart from its survivor.
    restore = await client.post(f"{LEADS}/{duplicate['id']}/restore", headers=owner.headers)
    assert restore.status_code == 404
    itself = await client.post(
        f"{LEADS}/{survivor['id']}/merge", json={"duplicate_id": survivor["id"]}, headers=owner.headers
    )
    assert itself.status_code == 422
    assert "crm.lead.merged" in [e.type for e in await _events(kernel, tenant.id)]


async def test_another_tenants_lead_looks_like_no_lead(
    client: Any, make_tenant: Any, member: Any, new_lead: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    owner, intruder = await member(tenant), await member(other)
    lead = await new_lead(owner.headers)
    mine = await new_lead(intruder.headers)
    missing = "0192f0a0-0000-7000-8000-000000000000"
    for path in ("", "/activities", "/duplicates"):
        theirs = await client.get(f"{LEADS}/{lead['id']}{path}", headers=intruder.headers)
        nothing = await client.get(f"{LEADS}/{missing}{path}", headers=intruder.headers)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["detail"] == nothing.json()["detail"]
    assert (
        await client.patch(f"{LEADS}/{lead['id']}", json={"name": "x"}, headers=intruder.headers)
    ).status_code == 404
    assert (await client.delete(f"{LEADS}/{lead['id']}", headers=intruder.headers)).status_code == 404
    merge = await client.post(
        f"{LEADS}/{mine['id']}/merge", json={"duplicate_id": lead["id"]}, headers=intruder.headers
    )
    merge_missing = await client.post(
        f"{LEADS}/{mine['id']}/merge", json={"duplicate_id": missing}, headers=intruder.headers
    )
    assert merge.status_code == merge_missing.status_code == 422
    assert merge.json()["errors"] == merge_missing.json()["errors"]


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(
        st.emails(),
        st.builds(
            lambda local, domain: f"{local}@{domain}",
            st.text(max_size=12),
            st.sampled_from(["example.com", "EXAMPLE.org", "bücher.de", "localhost", "-x.com", "a..b.com", "x.y"]),
        ),
    )
)
def test_email_normalisation_agrees_with_email_validator(address: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from inopsio_crm.leads.validation import FieldErrors, normalise_email

    errors = FieldErrors()
    ours = normalise_email(address, errors)
    if not address.strip():
        assert ours is None
        return
    try:
        expected = validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    assert ours == expected
    assert bool(errors) == (expected is None)
