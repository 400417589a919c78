"""Names people see are one line of visible text: refused when typed, folded when a provider sends them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inopsio.errors import Problem
from inopsio.names import check_name, is_one_line, to_one_line


@given(st.text())
def test_a_folded_name_is_always_one_line_and_folding_twice_changes_nothing(value: str) -> None:
    folded = to_one_line(value)
    assert is_one_line(folded)
    assert to_one_line(folded) == folded


def test_a_provider_name_with_line_breaks_and_overrides_keeps_its_words() -> None:
    assert to_one_line("Zoë\r\nMüller\u202e\tAdmin") == "Zoë Müller Admin"
    assert to_one_line("Ali\u200dReza") == "Ali\u200dReza"  # joiners stay: scripts and emoji need them


@pytest.mark.parametrize("value", ["Ann\nadmin", "Ann\u2028B", "\u202egnp.exe", "tab\there", "nul\x00"])
def test_a_typed_name_that_is_not_one_line_is_refused_at_its_field(value: str) -> None:
    with pytest.raises(Problem) as refused:
        check_name(value, "/name")
    assert refused.value.code == "invalid-name"
    assert refused.value.members["errors"][0]["pointer"] == "/name"
