"""Checks of customer data with the field's libraries (python-stdnum, email-validator, babel), raising
RFC 9457 problems that name the field."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from babel import Locale
from email_validator import EmailNotValidError, validate_email
from stdnum import util as stdnum_util
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumError

from inopsio.errors import Problem
from inopsio_erp.totals import TotalsError, currencies


def field_problem(pointer: str, detail: str, code: str = "validation-error", status: int = 422) -> Problem:
    """A problem naming one field by JSON pointer (``/lines/3/quantity``)."""
    pointer = pointer if pointer.startswith("/") else "/" + pointer
    return Problem(status, code, detail, errors=[{"pointer": pointer, "detail": detail}])


def problem_from_totals(exc: TotalsError) -> Problem:
    return field_problem(exc.field, exc.message)


@functools.cache
def countries() -> frozenset[str]:
    return frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha())


MAX_AMOUNT = Decimal("99999999999999")


def check_amount(value: Decimal, pointer: str, *, maximum: Decimal = MAX_AMOUNT, allow_zero: bool = True) -> Decimal:
    """A finite, non-negative decimal no larger than ``maximum`` with at most 6 decimal places."""
    if not value.is_finite():
        raise field_problem(pointer, "must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise field_problem(pointer, "must not be negative" if value < 0 else "must be more than zero")
    if value > maximum:
        raise field_problem(pointer, f"must be at most {maximum}")
    if value != value.quantize(Decimal("0.000001")):
        raise field_problem(pointer, "has more than 6 decimal places")
    return value


def check_country(value: str, pointer: str = "/country") -> str:
    value = value.strip().upper()
    if value and value not in countries():
        raise field_problem(pointer, f"{value!r} is not an ISO 3166 country code")
    return value


def check_currency(value: str, pointer: str = "/currency") -> str:
    value = value.strip().upper()
    if value not in currencies():
        raise field_problem(pointer, f"{value!r} is not an ISO 4217 currency code", code="unknown-currency")
    return value


def check_email(value: str, pointer: str = "/email") -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise field_problem(pointer, str(exc)) from None


def _tax_id_module(country: str) -> Any | None:
    for kind in ("vat", "tin"):
        module = stdnum_util.get_cc_module(country.lower(), kind)
        if module is not None:
            return module
    return None


def check_tax_id(value: str, country: str, pointer: str = "/tax_id") -> str:
    """The tax id in its compact form, checked with python-stdnum where it knows the country's format.

    An EU VAT number with its country prefix (``DE136695976``) is checked as one; otherwise the
    country's VAT or TIN module is used. Countries stdnum does not know keep the value as given.
    """
    value = value.strip()
    if not value:
        return ""
    prefixed = value[:2].upper()
    try:
        if prefixed.isalpha() and prefixed in {c.upper() for c in eu_vat.MEMBER_STATES} | {"EL", "XI"}:
            return eu_vat.validate(value)
        module = _tax_id_module(country) if country else None
        if module is not None:
            return str(module.validate(value))
    except StdnumError as exc:
        raise field_problem(
            pointer, f"not a valid tax id for {country or prefixed}: {exc}", code="invalid-tax-id"
        ) from None
    return value
