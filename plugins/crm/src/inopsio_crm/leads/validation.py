"""Checks on what a client sends about a lead, collected as RFC 9457 field errors.

Every problem in a request is reported at once (``errors``: ``pointer`` + ``detail``), so a form can
mark each bad field; nothing is stored unless everything is valid.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from email_validator import EmailNotValidError, validate_email

from inopsio.errors import Problem
from inopsio_crm.leads.models import CustomField

MAX_TEXT_FIELD = 1000
MAX_MONEY = Decimal(10) ** 16
_CURRENCIES = frozenset(list_currencies())


class FieldErrors:
    """Field errors of one request, raised together as a 422 problem."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, pointer: str, detail: str) -> None:
        self.errors.append({"pointer": pointer, "detail": detail})

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, code: str = "invalid-lead", what: str = "lead") -> None:
        if self.errors:
            fields = ", ".join(e["pointer"].lstrip("/") for e in self.errors)
            raise Problem(422, code, f"The {what} has invalid fields: {fields}.", errors=self.errors)


def default_phone_region(locale: str) -> str | None:
    """The tenant's territory (``de_CH`` → ``CH``) for phone numbers written without ``+``; None if unknown."""
    try:
        return Locale.parse(locale.replace("-", "_")).territory
    except (UnknownLocaleError, ValueError):
        return None


#: An unquoted ASCII local part (RFC 5322 dot-atom), which email-validator accepts as it is.
_PLAIN_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


@functools.lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | Exception:
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError as exc:
        return exc


def normalise_email(raw: str | None, errors: FieldErrors, pointer: str = "/email") -> str | None:
    """The address as email-validator normalises it, or a field error.

    Imports check many addresses of few domains: a plain local part with a domain already seen skips
    email-validator's per-address work (its domain checks dominate) and gives the same result.
    """
    if raw is None or not raw.strip():
        return None
    address = raw.strip()
    local, at, domain = address.rpartition("@")
    if at and len(local) <= 64 and _PLAIN_LOCAL_PART.match(local):
        checked = _normalised_domain(domain)
        if isinstance(checked, str):
            return f"{local}@{checked}"
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        errors.add(pointer, str(exc))
        return None


def normalise_phone(raw: str | None, region: str | None, errors: FieldErrors, pointer: str = "/phone") -> str | None:
    """E.164, or a field error; without ``+`` the number is read in ``region`` (if the tenant has one)."""
    if raw is None or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        hint = "" if region else " (write it with its country code, e.g. +41 44 668 18 00)"
        errors.add(pointer, f"{raw!r} is not a phone number{hint}")
        return None
    if not phonenumbers.is_valid_number(number):
        errors.add(pointer, f"{raw!r} is not a valid phone number")
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_money(
    value: Decimal | None, currency: str | None, errors: FieldErrors, *, value_field: str = "/estimated_value"
) -> str | None:
    """The currency upper-cased; a value needs an ISO 4217 currency and a currency needs a value."""
    if currency is not None:
        currency = currency.upper()
        if currency not in _CURRENCIES:
            errors.add("/currency", f"{currency!r} is not an ISO 4217 currency code")
    if value is not None and currency is None:
        errors.add("/currency", "a value needs a currency")
    if value is None and currency is not None:
        errors.add(value_field, "a currency needs a value")
    if value is not None:
        if not value.is_finite() or value < 0 or value >= MAX_MONEY:
            errors.add(value_field, "must be a number from 0 to 10^16")
        elif value.as_tuple().exponent < -2:  # type: ignore[operator]
            errors.add(value_field, "at most two decimal places")
    return currency


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, without duplicates (first spelling wins, compared without case), in the given order."""
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    return out


def check_custom_value(field: CustomField, value: Any, errors: FieldErrors) -> Any:
    """The value as stored in JSONB: text, number, ``YYYY-MM-DD``, one of the choices, or a boolean."""
    pointer = f"/custom/{field.key}"
    if field.type == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT_FIELD:
            errors.add(pointer, f"must be text of at most {MAX_TEXT_FIELD} characters")
            return None
        return value
    if field.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            errors.add(pointer, "must be a number")
            return None
        return value
    if field.type == "date":
        try:
            return dt.date.fromisoformat(value).isoformat() if isinstance(value, str) else _bad_date(pointer, errors)
        except ValueError:
            return _bad_date(pointer, errors)
    if field.type == "choice":
        if value not in field.choices:
            errors.add(pointer, f"must be one of {', '.join(field.choices)}")
            return None
        return value
    if not isinstance(value, bool):
        errors.add(pointer, "must be true or false")
        return None
    return value


def _bad_date(pointer: str, errors: FieldErrors) -> None:
    errors.add(pointer, "must be a date like 2026-11-25")


def check_custom(
    fields: dict[str, CustomField],
    values: dict[str, Any],
    errors: FieldErrors,
    *,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge ``values`` into ``current`` (``None`` removes a key) and check every value and required field."""
    result = dict(current or {})
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            errors.add(f"/custom/{key}", "no such custom field")
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = check_custom_value(field, value, errors)
    for key, field in fields.items():
        if field.required and result.get(key) in (None, ""):
            errors.add(f"/custom/{key}", "is required")
    return result
