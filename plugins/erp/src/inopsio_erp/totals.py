"""The totals engine: an invoice's line amounts, discounts and taxes in exact ``Decimal`` arithmetic.

Pure functions, no database. The rounding rule (documented in docs/erp.md):

1. A line's amount is ``quantity x unit price - line discount``, rounded half-up to the currency's
   minor units (ISO 4217 via babel: JPY 0, EUR 2, BHD 3 digits).
2. The invoice discount (percent of the sum of line amounts, rounded half-up, or a fixed amount)
   is spread over the lines in proportion to their amounts, in whole minor units (largest
   remainder), so the shares add up to the discount exactly.
3. Inclusive taxes: the line's discounted amount contains them; its net is that amount divided
   by ``1 + sum of inclusive rates``, rounded half-up, and the included tax (amount - net) is split
   between the inclusive rates in proportion to the rates (largest remainder). A tax-inclusive
   price therefore always totals to exactly the price.
4. Exclusive taxes: each is ``net x rate`` rounded half-up, per line and per tax.
5. Every total is the sum of rounded parts: ``total = subtotal - discount + tax`` exactly, and the
   lines' totals add up to the invoice's total.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

from babel.numbers import get_currency_precision, list_currencies

HUNDRED = Decimal(100)
ZERO = Decimal(0)
DiscountKind = Literal["percent", "fixed"]


class TotalsError(ValueError):
    """Input the engine refuses; ``field`` names where (``lines/3/discount_value``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@functools.cache
def currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@functools.cache
def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency``: ``Decimal("0.01")`` for EUR, ``Decimal("1")`` for JPY."""
    if currency not in currencies():
        raise TotalsError("currency", f"{currency!r} is not an ISO 4217 currency code")
    return Decimal(1).scaleb(-get_currency_precision(currency))


def round_money(value: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor units."""
    return value.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Tax:
    name: str
    rate: Decimal  # percent
    inclusive: bool = False
    category: str = "S"


@dataclass(frozen=True)
class LineInput:
    quantity: Decimal
    unit_price: Decimal
    taxes: Sequence[Tax] = ()
    discount_kind: DiscountKind | None = None
    discount_value: Decimal | None = None


@dataclass(frozen=True)
class TaxAmount:
    name: str
    rate: Decimal
    inclusive: bool
    category: str
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class LineTotals:
    #: quantity x price - line discount, rounded (tax-inclusive for lines with inclusive taxes).
    amount: Decimal
    #: This line's share of the invoice discount.
    discount_share: Decimal
    #: The taxable amount after every discount, without any tax.
    net: Decimal
    #: Exclusive taxes added on top.
    tax: Decimal
    #: Inclusive taxes contained in ``amount - discount_share``.
    included_tax: Decimal
    #: What the line adds to the invoice total: amount - discount share + tax.
    total: Decimal
    taxes: tuple[TaxAmount, ...]


@dataclass(frozen=True)
class InvoiceTotals:
    currency: str
    lines: tuple[LineTotals, ...]
    #: Sum of line amounts (the prices as entered, inclusive taxes included).
    subtotal: Decimal
    #: The invoice-level discount.
    discount: Decimal
    #: Exclusive taxes (added to the subtotal).
    tax: Decimal
    #: Inclusive taxes (already inside the subtotal).
    included_tax: Decimal
    total: Decimal
    #: Net amount (total without any tax).
    net: Decimal
    #: One entry per (name, rate, inclusive, category), the sums of the lines' rounded taxes.
    tax_breakdown: tuple[TaxAmount, ...] = field(default=())


def allocate(amount: Decimal, weights: Sequence[Decimal], unit: Decimal) -> list[Decimal]:
    """Split ``amount`` (a whole number of ``unit``) in proportion to ``weights``, in whole units,
    so the parts add up to ``amount`` exactly (largest remainder; ties go to the earlier weight)."""
    total_weight = sum(weights, ZERO)
    if amount == 0 or total_weight == 0:
        if amount != 0:
            raise ValueError("cannot spread a non-zero amount over zero weights")
        return [ZERO for _ in weights]
    units = int((amount / unit).to_integral_value())
    exact = [Decimal(units) * w / total_weight for w in weights]
    floors = [int(e.to_integral_value(rounding=ROUND_FLOOR)) for e in exact]
    rest = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:rest]:
        floors[i] += 1
    return [Decimal(f) * unit for f in floors]


def _line_amount(index: int, line: LineInput, currency: str) -> Decimal:
    where = f"lines/{index}"
    if line.quantity < 0:
        raise TotalsError(f"{where}/quantity", "quantity must not be negative")
    if line.unit_price < 0:
        raise TotalsError(f"{where}/unit_price", "unit price must not be negative")
    gross = line.quantity * line.unit_price
    discount = ZERO
    if line.discount_kind is not None:
        value = line.discount_value or ZERO
        if value < 0:
            raise TotalsError(f"{where}/discount_value", "a discount must not be negative")
        if line.discount_kind == "percent":
            if value > HUNDRED:
                raise TotalsError(f"{where}/discount_value", "a percent discount is at most 100")
            discount = gross * value / HUNDRED
        else:
            if value > gross:
                raise TotalsError(f"{where}/discount_value", "a fixed discount is at most the line's amount")
            discount = value
    for t, tax in enumerate(line.taxes):
        if tax.rate < 0 or tax.rate > 1000:
            raise TotalsError(f"{where}/taxes/{t}", "a tax rate is between 0 and 1000 percent")
    return round_money(gross - discount, currency)


def _split_taxes(
    line: LineInput, after_discount: Decimal, currency: str, unit: Decimal
) -> tuple[Decimal, Decimal, Decimal, tuple[TaxAmount, ...]]:
    inclusive = [t for t in line.taxes if t.inclusive]
    exclusive = [t for t in line.taxes if not t.inclusive]
    amounts: list[TaxAmount] = []
    included = ZERO
    net = after_discount
    if inclusive:
        rate_sum = sum((t.rate for t in inclusive), ZERO)
        net = round_money(after_discount / (1 + rate_sum / HUNDRED), currency)
        included = after_discount - net
        shares = allocate(included, [t.rate for t in inclusive], unit) if rate_sum else [ZERO] * len(inclusive)
        amounts += [TaxAmount(t.name, t.rate, True, t.category, net, s) for t, s in zip(inclusive, shares, strict=True)]
    added = ZERO
    for t in exclusive:
        amount = round_money(net * t.rate / HUNDRED, currency)
        added += amount
        amounts.append(TaxAmount(t.name, t.rate, False, t.category, net, amount))
    return net, added, included, tuple(amounts)


def compute(
    currency: str,
    lines: Sequence[LineInput],
    discount_kind: DiscountKind | None = None,
    discount_value: Decimal | None = None,
) -> InvoiceTotals:
    """Totals of an invoice in ``currency``; :class:`TotalsError` for input that cannot be invoiced."""
    unit = minor_unit(currency)
    amounts = [_line_amount(i, line, currency) for i, line in enumerate(lines)]
    subtotal = sum(amounts, ZERO)
    discount = ZERO
    if discount_kind is not None:
        value = discount_value or ZERO
        if value < 0:
            raise TotalsError("discount_value", "a discount must not be negative")
        if discount_kind == "percent":
            if value > HUNDRED:
                raise TotalsError("discount_value", "a percent discount is at most 100")
            discount = round_money(subtotal * value / HUNDRED, currency)
        else:
            if round_money(value, currency) != value:
                raise TotalsError("discount_value", f"a fixed discount has at most the minor units of {currency}")
            if value > subtotal:
                raise TotalsError("discount_value", "the discount is larger than the invoice")
            discount = value
    shares = allocate(discount, amounts, unit)
    line_totals: list[LineTotals] = []
    breakdown: dict[tuple[str, Decimal, bool, str], list[Decimal]] = {}
    for line, amount, share in zip(lines, amounts, shares, strict=True):
        after = amount - share
        net, added, included, taxes = _split_taxes(line, after, currency, unit)
        line_totals.append(LineTotals(amount, share, net, added, included, after + added, taxes))
        for t in taxes:
            entry = breakdown.setdefault((t.name, t.rate, t.inclusive, t.category), [ZERO, ZERO])
            entry[0] += t.base
            entry[1] += t.amount
    tax = sum((lt.tax for lt in line_totals), ZERO)
    included_tax = sum((lt.included_tax for lt in line_totals), ZERO)
    total = subtotal - discount + tax
    return InvoiceTotals(
        currency=currency,
        lines=tuple(line_totals),
        subtotal=subtotal,
        discount=discount,
        tax=tax,
        included_tax=included_tax,
        total=total,
        net=total - tax - included_tax,
        tax_breakdown=tuple(
            TaxAmount(name, rate, inclusive, category, base, amount)
            for (name, rate, inclusive, category), (base, amount) in breakdown.items()
        ),
    )
