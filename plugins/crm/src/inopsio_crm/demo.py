"""Demo data for ``inopsio serve --demo``: a living CRM at first sign-in.

Deterministic (seeded Faker and random), written with a few bulk inserts so it takes well under a
second: 40 companies, 90 contacts, 300 leads with timelines, 60 deals spread over the default
pipeline's stages with their stage history (so the metrics have something to say).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import phonenumbers
from faker import Faker
from sqlalchemy import insert, select

from inopsio.db.base import new_id, utcnow
from inopsio.identity.models import Membership
from inopsio_crm.contacts.models import Company, Contact
from inopsio_crm.leads.models import Lead, LeadActivity
from inopsio_crm.pipeline.models import Deal, DealStageChange, Pipeline, Stage

SEED = 2026
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "de_CH")
PHONE_PREFIXES = {
    "en_US": "+1 212 555",
    "en_GB": "+44 20 7946",
    "de_DE": "+49 30 9",
    "fr_FR": "+33 1 4",
    "de_CH": "+41 44 6",
}
SOURCES = ("website", "referral", "trade fair", "cold call", "newsletter", "partner", "linkedin")
STATUSES = ("new", "new", "new", "contacted", "contacted", "qualified", "unqualified")
TAGS = ("vip", "enterprise", "smb", "follow-up", "hot", "newsletter", "event-2026")
NOTES = (
    "Asked for a quote for next quarter.",
    "Interested in the premium plan; call back after the budget meeting.",
    "Met at the trade fair, very engaged.",
    "Prefers e-mail over phone.",
    "Evaluating two competitors as well.",
)


def _phone(fake: Faker, rng: random.Random, locale: str) -> str | None:
    digits = "".join(str(rng.randrange(10)) for _ in range(12))
    prefix = PHONE_PREFIXES[locale]
    wanted = {"en_US": 4, "en_GB": 4, "de_DE": 7, "fr_FR": 7, "de_CH": 6}[locale]
    try:
        number = phonenumbers.parse(prefix + digits[:wanted])
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(name: str, domain: str) -> str:
    local = ".".join(part for part in name.lower().replace("'", "").split() if part.isalpha())
    return f"{local or 'contact'}@{domain}"


async def seed(tenant: Any, session: Any) -> None:
    rng = random.Random(SEED)  # noqa: S311 - demo data must be reproducible, not secret
    fakers = {locale: Faker(locale) for locale in LOCALES}
    for index, fake in enumerate(fakers.values()):
        fake.seed_instance(SEED + index)
    now = utcnow()
    tenant_id = tenant.id
    currency = tenant.settings.currency
    members = list(
        (await session.execute(select(Membership.user_id).where(Membership.tenant_id == tenant_id))).scalars()
    )

    companies = []
    for _ in range(40):
        locale = rng.choice(LOCALES)
        fake = fakers[locale]
        name = fake.company()
        domain = "".join(c for c in name.lower() if c.isalnum())[:20] + ".example"
        companies.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "name": name,
                "domain": domain,
                "phone": _phone(fake, rng, locale),
                "address": fake.address().replace("\n", ", "),
                "owner_id": rng.choice(members) if members else None,
                "tags": rng.sample(TAGS, rng.randrange(0, 3)),
                "created_at": now - dt.timedelta(days=rng.randrange(30, 400)),
                "updated_at": now,
                "_locale": locale,
            }
        )
    contacts = []
    for _ in range(90):
        company = rng.choice(companies)
        fake = fakers[company["_locale"]]
        name = fake.name()
        contacts.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "name": name,
                "email": _email(name, company["domain"]),
                "phone": _phone(fake, rng, company["_locale"]),
                "title": fake.job()[:200],
                "company_id": company["id"],
                "owner_id": company["owner_id"],
                "tags": [],
                "created_at": company["created_at"],
                "updated_at": now,
            }
        )
    leads, activities = [], []
    for _ in range(300):
        locale = rng.choice(LOCALES)
        fake = fakers[locale]
        name = fake.name()
        company_name = fake.company()
        created = now - dt.timedelta(days=rng.randrange(0, 120), minutes=rng.randrange(0, 1440))
        value = Decimal(rng.randrange(5, 500) * 100) if rng.random() < 0.7 else None
        lead_id = new_id()
        leads.append(
            {
                "id": lead_id,
                "tenant_id": tenant_id,
                "name": name,
                "email": _email(name, "".join(c for c in company_name.lower() if c.isalnum())[:20] + ".example"),
                "phone": _phone(fake, rng, locale) if rng.random() < 0.8 else None,
                "company": company_name[:200],
                "title": fake.job()[:200],
                "source": rng.choice(SOURCES),
                "status": rng.choice(STATUSES),
                "owner_id": rng.choice(members) if members and rng.random() < 0.6 else None,
                "estimated_value": value,
                "currency": currency if value is not None else None,
                "tags": rng.sample(TAGS, rng.randrange(0, 3)),
                "custom": {},
                "created_at": created,
                "updated_at": created,
            }
        )
        activities.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "lead_id": lead_id,
                "kind": "created",
                "body": "",
                "data": {"how": "demo"},
                "created_at": created,
            }
        )
        if rng.random() < 0.4:
            activities.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "lead_id": lead_id,
                    "kind": "note",
                    "body": rng.choice(NOTES),
                    "data": {},
                    "created_at": created + dt.timedelta(hours=rng.randrange(1, 72)),
                }
            )

    pipeline = (await session.execute(select(Pipeline).order_by(Pipeline.position).limit(1))).scalar_one_or_none()
    deals, changes = [], []
    if pipeline is not None:
        stages = list(
            (
                await session.execute(select(Stage).where(Stage.pipeline_id == pipeline.id).order_by(Stage.position))
            ).scalars()
        )
        open_stages = [s for s in stages if s.kind == "open"]
        positions: dict[Any, int] = {}
        for _ in range(60):
            contact = rng.choice(contacts)
            reached = rng.randrange(len(open_stages))
            final = open_stages[reached]
            if rng.random() < 0.35:
                final = rng.choice([s for s in stages if s.kind != "open"] or open_stages)
            created = now - dt.timedelta(days=rng.randrange(1, 90))
            path = [*open_stages[: reached + 1], *([final] if final.kind != "open" else [])]
            deal_id = new_id()
            value = Decimal(rng.randrange(10, 800) * 100)
            deals.append(
                {
                    "id": deal_id,
                    "tenant_id": tenant_id,
                    "pipeline_id": pipeline.id,
                    "stage_id": final.id,
                    "position": positions.get(final.id, 0),
                    "title": f"{rng.choice(('Licences', 'Rollout', 'Renewal', 'Pilot', 'Support'))} "
                    f"for {next(c['name'] for c in companies if c['id'] == contact['company_id'])}"[:200],
                    "value": value,
                    "currency": currency,
                    "probability": None,
                    "expected_close_date": (now + dt.timedelta(days=rng.randrange(5, 120))).date(),
                    "owner_id": contact["owner_id"],
                    "contact_id": contact["id"],
                    "company_id": contact["company_id"],
                    "version": len(path),
                    "stage_entered_at": created + dt.timedelta(days=len(path) - 1),
                    "closed_at": created + dt.timedelta(days=len(path)) if final.kind != "open" else None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            positions[final.id] = positions.get(final.id, 0) + 1
            previous = None
            for step, stage in enumerate(path):
                changes.append(
                    {
                        "id": new_id(),
                        "tenant_id": tenant_id,
                        "deal_id": deal_id,
                        "from_stage_id": previous,
                        "to_stage_id": stage.id,
                        "changed_at": created + dt.timedelta(days=step),
                    }
                )
                previous = stage.id

    for company in companies:
        del company["_locale"]
    await session.execute(insert(Company), companies)
    await session.execute(insert(Contact), contacts)
    await session.execute(insert(Lead), leads)
    await session.execute(insert(LeadActivity), activities)
    if deals:
        await session.execute(insert(Deal), deals)
        await session.execute(insert(DealStageChange), changes)
