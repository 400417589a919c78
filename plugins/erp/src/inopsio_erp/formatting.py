"""Amounts and dates in the tenant's locale (babel)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_currency

from inopsio.tenancy.schemas import TenantInfo


def money(amount: Decimal, currency: str, locale: str) -> str:
    """``1.234,50 €`` in de, ``€1,234.50`` in en: the currency's own minor units."""
    return format_currency(amount, currency, locale=locale.replace("-", "_"))


def unit_price(amount: Decimal, currency: str, locale: str) -> str:
    """A price per unit with all its decimals (``0,125 €``): unit prices may be finer than the currency."""
    return format_currency(amount.normalize(), currency, locale=locale.replace("-", "_"), decimal_quantization=False)


def date(value: dt.date | None, locale: str) -> str:
    return format_date(value, format="medium", locale=locale.replace("-", "_")) if value else ""


def today(tenant: TenantInfo) -> dt.date:
    """Today in the tenant's time zone: due dates and overdue checks follow the tenant's calendar."""
    return dt.datetime.now(ZoneInfo(tenant.settings.timezone)).date()
