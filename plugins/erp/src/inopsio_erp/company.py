"""The tenant's invoicing settings: the issuer's details printed on invoices, numbering patterns,
reminders and the Stripe keys (stored encrypted with the installation's key)."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.crypto import SecretBox, master_secret
from inopsio.settings import Settings
from inopsio_erp.models import ErpSettings

PDF_TEMPLATES = ("classic", "modern", "minimal")
#: A numbering pattern: any text with one counter field ``{0000}`` (its width) and optionally
#: ``{YYYY}`` (the issue year; numbering restarts each year) or ``{YY}``.
PATTERN = r"^[A-Za-z0-9/_.\-]*(\{YYYY\}|\{YY\})?[A-Za-z0-9/_.\-]*\{0+\}[A-Za-z0-9/_.\-]*$"
_PATTERN_FIELDS = re.compile(r"\{(YYYY|YY|0+)\}")


async def get_settings(session: AsyncSession) -> ErpSettings:
    """The tenant's settings row, created with defaults on first use."""
    tenant_id = session.info["tenant_id"]
    row = await session.get(ErpSettings, tenant_id)
    if row is None:
        await session.execute(insert(ErpSettings).values(tenant_id=tenant_id).on_conflict_do_nothing())
        row = await session.get(ErpSettings, tenant_id)
        assert row is not None
    return row


def format_number(pattern: str, year: int, value: int) -> str:
    def field(match: re.Match[str]) -> str:
        part = match.group(1)
        if part == "YYYY":
            return f"{year:04d}"
        if part == "YY":
            return f"{year % 100:02d}"
        return str(value).zfill(len(part))

    return _PATTERN_FIELDS.sub(field, pattern)


def pattern_period(pattern: str, year: int) -> str:
    """The counter a pattern draws from: one per year when the year is part of the number."""
    return str(year) if ("{YYYY}" in pattern or "{YY}" in pattern) else ""


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(master_secret(settings))


Text200 = Annotated[str, msgspec.Meta(max_length=200)]
Text2000 = Annotated[str, msgspec.Meta(max_length=2000)]


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    company_name: Text200 | msgspec.UnsetType = msgspec.UNSET
    address: Text2000 | msgspec.UnsetType = msgspec.UNSET
    country: Annotated[str, msgspec.Meta(max_length=2)] | msgspec.UnsetType = msgspec.UNSET
    tax_id: Annotated[str, msgspec.Meta(max_length=50)] | msgspec.UnsetType = msgspec.UNSET
    email: Annotated[str, msgspec.Meta(max_length=320)] | msgspec.UnsetType = msgspec.UNSET
    bank_details: Text2000 | msgspec.UnsetType = msgspec.UNSET
    iban: Annotated[str, msgspec.Meta(max_length=50)] | msgspec.UnsetType = msgspec.UNSET
    bic: Annotated[str, msgspec.Meta(max_length=20)] | msgspec.UnsetType = msgspec.UNSET
    footer: Text2000 | msgspec.UnsetType = msgspec.UNSET
    logo_url: Text2000 | msgspec.UnsetType = msgspec.UNSET
    color: Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")] | msgspec.UnsetType = msgspec.UNSET
    pdf_template: Annotated[str, msgspec.Meta(pattern=r"^(classic|modern|minimal)$")] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    invoice_pattern: Annotated[str, msgspec.Meta(pattern=PATTERN, max_length=60)] | msgspec.UnsetType = msgspec.UNSET
    credit_note_pattern: Annotated[str, msgspec.Meta(pattern=PATTERN, max_length=60)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    default_payment_terms_days: Annotated[int, msgspec.Meta(ge=0, le=365)] | msgspec.UnsetType = msgspec.UNSET
    reminder_days: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=365)]], msgspec.Meta(max_length=10)] | msgspec.UnsetType
    ) = msgspec.UNSET
    #: Write-only: stored encrypted, never returned.
    stripe_secret_key: Annotated[str, msgspec.Meta(max_length=300)] | msgspec.UnsetType = msgspec.UNSET
    stripe_webhook_secret: Annotated[str, msgspec.Meta(max_length=300)] | msgspec.UnsetType = msgspec.UNSET
    stripe_publishable_key: Text200 | msgspec.UnsetType = msgspec.UNSET
    #: Another Stripe API address (a test server such as localstripe); empty for Stripe itself.
    stripe_api_base: Text200 | msgspec.UnsetType = msgspec.UNSET
    stripe_payment_methods: (
        list[Annotated[str, msgspec.Meta(pattern=r"^(card|sepa_debit|customer_balance|us_bank_account)$")]]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class SettingsOut(msgspec.Struct, kw_only=True):
    company_name: str
    address: str
    country: str
    tax_id: str
    email: str
    bank_details: str
    iban: str
    bic: str
    footer: str
    logo_url: str
    color: str
    pdf_template: str
    invoice_pattern: str
    credit_note_pattern: str
    default_payment_terms_days: int
    reminder_days: list[int]
    stripe_configured: bool
    stripe_webhook_configured: bool
    stripe_publishable_key: str
    stripe_api_base: str
    stripe_payment_methods: list[str]


def settings_out(row: ErpSettings) -> SettingsOut:
    return SettingsOut(
        company_name=row.company_name,
        address=row.address,
        country=row.country,
        tax_id=row.tax_id,
        email=row.email,
        bank_details=row.bank_details,
        iban=row.iban,
        bic=row.bic,
        footer=row.footer,
        logo_url=row.logo_url,
        color=row.color,
        pdf_template=row.pdf_template,
        invoice_pattern=row.invoice_pattern,
        credit_note_pattern=row.credit_note_pattern,
        default_payment_terms_days=row.default_payment_terms_days,
        reminder_days=list(row.reminder_days),
        stripe_configured=bool(row.stripe_secret_key),
        stripe_webhook_configured=bool(row.stripe_webhook_secret),
        stripe_publishable_key=row.stripe_publishable_key,
        stripe_api_base=row.stripe_api_base,
        stripe_payment_methods=list(row.stripe_payment_methods),
    )
