"""The totals engine: exact Decimal arithmetic in the currency's minor units, whatever the input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inopsio_erp.totals import LineInput, Tax, TotalsError, allocate, compute, minor_unit

D = Decimal


def test_minor_units_come_from_iso_4217_for_any_currency():
    assert minor_unit("EUR") == D("0.01")
    assert minor_unit("JPY") == D("1")
    assert minor_unit("BHD") == D("0.001")
    assert minor_unit("CLF") == D("0.0001")
    with pytest.raises(TotalsError):
        minor_unit("XYZ")


def test_exclusive_tax_is_rounded_half_up_per_line():
    vat = Tax("VAT 20%", D(20))
    totals = compute("EUR", [LineInput(D(3), D("0.125"), (vat,)), LineInput(D(1), D("10.00"), (vat,))])
    # 3 x 0.125 = 0.375 → 0.38; tax 0.076 → 0.08; 10.00 → tax 2.00
    assert [lt.amount for lt in totals.lines] == [D("0.38"), D("10.00")]
    assert [lt.tax for lt in totals.lines] == [D("0.08"), D("2.00")]
    assert totals.subtotal == D("10.38")
    assert totals.tax == D("2.08")
    assert totals.total == D("12.46")


def test_inclusive_price_totals_to_exactly_the_price():
    vat = Tax("MwSt 19%", D(19), inclusive=True)
    totals = compute("EUR", [LineInput(D(1), D("10.00"), (vat,))])
    line = totals.lines[0]
    assert line.net == D("8.40")
    assert line.included_tax == D("1.60")
    assert totals.total == D("10.00")
    assert totals.tax == 0


def test_several_taxes_on_one_line_and_yen_without_decimals():
    taxes = (Tax("GST", D(5)), Tax("PST", D("7.5")))
    totals = compute("JPY", [LineInput(D(3), D(333), taxes)])
    assert totals.subtotal == D(999)
    assert [t.amount for t in totals.lines[0].taxes] == [D(50), D(75)]  # 49.95 → 50, 74.925 → 75
    assert totals.total == D(1124)


def test_three_decimal_currency():
    totals = compute("BHD", [LineInput(D(1), D("1.2345"), (Tax("VAT", D(10)),))])
    assert totals.subtotal == D("1.235")  # half-up at 3 digits
    assert totals.tax == D("0.124")  # 0.1235 → 0.124
    assert totals.total == D("1.359")


def test_line_and_invoice_discounts():
    vat = Tax("VAT", D(20))
    lines = [
        LineInput(D(2), D("50.00"), (vat,), "percent", D(10)),  # 100 - 10 = 90
        LineInput(D(1), D("30.00"), (vat,), "fixed", D("5.00")),  # 25
    ]
    totals = compute("EUR", lines, "fixed", D("11.50"))
    assert totals.subtotal == D("115.00")
    assert totals.discount == D("11.50")
    assert sum(lt.discount_share for lt in totals.lines) == D("11.50")
    assert totals.total == totals.subtotal - totals.discount + totals.tax


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (LineInput(D(-1), D(1)), "lines/0/quantity"),
        (LineInput(D(1), D(-1)), "lines/0/unit_price"),
        (LineInput(D(1), D(1), (), "percent", D(101)), "lines/0/discount_value"),
        (LineInput(D(1), D(1), (), "fixed", D(2)), "lines/0/discount_value"),
    ],
)
def test_bad_lines_are_refused_with_the_field(line, field):
    with pytest.raises(TotalsError) as caught:
        compute("EUR", [line])
    assert caught.value.field == field


def test_invoice_discount_larger_than_the_invoice_is_refused():
    with pytest.raises(TotalsError) as caught:
        compute("EUR", [LineInput(D(1), D(10))], "fixed", D("10.01"))
    assert caught.value.field == "discount_value"


currency = st.sampled_from(["EUR", "JPY", "BHD", "USD", "CLF", "CHF"])
money = st.decimals(min_value=0, max_value=D("99999"), places=4, allow_nan=False, allow_infinity=False)
quantity = st.decimals(min_value=0, max_value=D("1000"), places=3, allow_nan=False, allow_infinity=False)
rate = st.decimals(min_value=0, max_value=D(30), places=2, allow_nan=False, allow_infinity=False)
tax = st.builds(Tax, name=st.sampled_from(["A", "B", "C"]), rate=rate, inclusive=st.booleans())
percent = st.decimals(min_value=0, max_value=D(100), places=2, allow_nan=False, allow_infinity=False)
line = st.builds(
    LineInput,
    quantity=quantity,
    unit_price=money,
    taxes=st.lists(tax, max_size=3).map(tuple),
    discount_kind=st.sampled_from([None, "percent"]),
    discount_value=percent,
)


@settings(max_examples=300, deadline=None)
@given(currency, st.lists(line, min_size=1, max_size=8), st.sampled_from([None, "percent", "fixed"]), percent)
def test_totals_never_lose_a_minor_unit(cur, lines, discount_kind, discount_value):
    unit = minor_unit(cur)
    if discount_kind == "fixed":
        first = compute(cur, lines)
        discount_value = (first.subtotal * D("0.37")).quantize(unit, rounding="ROUND_FLOOR")
    totals = compute(cur, lines, discount_kind, discount_value)
    parts = [totals.subtotal, totals.discount, totals.tax, totals.included_tax, totals.total, totals.net]
    for part in parts:
        assert part >= 0
        assert part == part.quantize(unit), "every total is in whole minor units"
    assert totals.total == totals.subtotal - totals.discount + totals.tax
    assert totals.total == sum(lt.total for lt in totals.lines)
    assert totals.net + totals.tax + totals.included_tax == totals.total
    assert totals.discount == sum(lt.discount_share for lt in totals.lines)
    assert sum(t.amount for t in totals.tax_breakdown) == totals.tax + totals.included_tax
    for lt in totals.lines:
        assert lt.net + lt.tax + lt.included_tax == lt.total
        assert lt.discount_share <= lt.amount


@given(st.integers(min_value=0, max_value=10**6), st.lists(money, min_size=1, max_size=20))
def test_allocation_adds_up_exactly(units, weights):
    if sum(weights) == 0:
        units = 0
    parts = allocate(D(units) * D("0.01"), weights, D("0.01"))
    assert sum(parts) == D(units) * D("0.01")
    assert all(p >= 0 for p in parts)
