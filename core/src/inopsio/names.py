"""What a name people see may contain: one line of visible text (user names, tenant names).

Names travel into mail subjects and headers, audit lines, CSV exports and lists. A line break there
forges a second line (a fake audit entry, an injected header); a bidirectional override makes a name
read in an order other than the one stored (``"\\u202egnp.exe"`` shows as ``exe.png``). So every
place that sets a name refuses them, with a 422 problem pointing at the field.
"""

from __future__ import annotations

import unicodedata

from inopsio.errors import Problem

#: Control characters (C0, DEL, C1: line breaks, tabs, NUL, escape) and the line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
#: Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069). Joiners (U+200C,
#: U+200D) stay allowed: Persian and emoji sequences need them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_one_line(value: str) -> bool:
    """Whether ``value`` holds no control character, line separator or bidirectional control."""
    return not any(ch in _BIDI_CONTROLS or unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in value)


def to_one_line(value: str) -> str:
    """``value`` with every refused character turned into a space, runs of spaces collapsed: for
    names that come from elsewhere (an OIDC provider's ``name`` claim), which are kept, not refused."""
    cleaned = "".join(
        " " if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _REFUSED_CATEGORIES else ch for ch in value
    )
    return " ".join(cleaned.split())


def check_name(value: str | None, pointer: str) -> None:
    """Refuse (422 ``invalid-name``) a name that is not one line of visible text; ``pointer`` is the
    JSON pointer of the field in the request body (``/name``, ``/tenant_name``, ...)."""
    if value is None or is_one_line(value):
        return
    detail = "Use one line of text: no line breaks, tabs or other control characters."
    raise Problem(422, "invalid-name", detail, errors=[{"pointer": pointer, "detail": detail}])
