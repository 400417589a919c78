"""Finding leads that look like the same person: same email, same phone, or a close name + company.

Exact matches use the ``lower(email)`` and ``phone`` indexes. Fuzzy candidates are leads sharing a
word with the name (the search terms), at most ``FUZZY_CANDIDATES`` of them, and are scored with
rapidfuzz's ``token_sort_ratio`` so "Smith, Anna" matches "Anna Smith".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from rapidfuzz import fuzz
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio_crm.leads.models import Lead, LeadTerm

FUZZY_CANDIDATES = 200
NAME_THRESHOLD = 88.0
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Duplicate:
    lead: Lead
    reasons: list[str] = field(default_factory=list)
    score: float = 0.0


def similarity(name_a: str, company_a: str, name_b: str, company_b: str) -> float:
    """0-100: how alike two people look by name, and by company when both have one."""
    name_score = fuzz.token_sort_ratio(name_a.lower(), name_b.lower())
    if company_a.strip() and company_b.strip():
        company_score = fuzz.token_set_ratio(company_a.lower(), company_b.lower())
        return float(min(name_score, company_score) * 0.4 + name_score * 0.6)
    return float(name_score)


def name_words(name: str) -> list[str]:
    """The words of ``name`` as the search document holds them (lower case, longer than one letter)."""
    return sorted({w.lower()[:100] for w in _WORD.findall(name) if len(w) > 1})


async def find_duplicates(
    session: AsyncSession,
    *,
    name: str,
    company: str,
    email: str | None,
    phone: str | None,
    exclude: Sequence[UUID] = (),
) -> list[Duplicate]:
    """Live leads (not deleted, not merged) that match by email, phone or name + company, best first."""
    found: dict[UUID, Duplicate] = {}
    exact = []
    if email:
        exact.append(func.lower(Lead.email) == email.lower())
    if phone:
        exact.append(Lead.phone == phone)
    live = [Lead.deleted_at.is_(None), Lead.id.not_in(exclude)] if exclude else [Lead.deleted_at.is_(None)]
    if exact:
        for lead in (await session.execute(select(Lead).where(or_(*exact), *live).limit(50))).scalars():
            match = found.setdefault(lead.id, Duplicate(lead))
            if email and lead.email and lead.email.lower() == email.lower():
                match.reasons.append("email")
            if phone and lead.phone == phone:
                match.reasons.append("phone")
    words = name_words(name)
    if words:
        sharing_a_word = select(LeadTerm.lead_id).where(LeadTerm.term.in_(words))
        candidates = await session.execute(
            select(Lead).where(Lead.id.in_(sharing_a_word), *live).limit(FUZZY_CANDIDATES)
        )
        for lead in candidates.scalars():
            score = similarity(name, company, lead.name, lead.company)
            if score >= NAME_THRESHOLD:
                match = found.setdefault(lead.id, Duplicate(lead))
                match.reasons.append("name_company")
                match.score = score
    for match in found.values():
        if not match.score:
            match.score = similarity(name, company, match.lead.name, match.lead.company)
    return sorted(found.values(), key=lambda m: (-len(m.reasons), -m.score))
