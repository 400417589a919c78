"""Whether a string is a path on this site: the one check for every link, redirect target and image
address that must not lead a browser to another host.

A browser resolves more than ``//host`` off-site: it reads ``\\`` as ``/`` (``/\\evil.example``),
drops tabs and line breaks anywhere (``/<TAB>/evil.example`` is ``//evil.example``) and strips
leading control characters and spaces; and a proxy or framework that decodes the path once more
turns ``/%5cevil.example`` or ``/%2f%2fevil.example`` into the same. So a path on this site is
refused unless it, and each percent-decoding of it, starts with one ``/`` not followed by another
``/`` or ``\\``, and holds no backslash, control character or whitespace.
"""

from __future__ import annotations

from urllib.parse import unquote

#: Decodings looked at: a value still changing after this many is refused rather than followed.
_MAX_DECODINGS = 3


def holds_space_or_control(value: str) -> bool:
    """Whitespace or a control character anywhere: browsers drop or strip some of them before they
    resolve an address, so what the check saw is not what the browser follows."""
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _plain_path(value: str) -> bool:
    if not value.startswith("/") or value[1:2] in ("/", "\\") or "\\" in value:
        return False
    return not holds_space_or_control(value)


def is_site_path(value: str) -> bool:
    """True for ``/path?query#fragment`` on this site; False for anything a browser, or a server
    decoding it again, could resolve to another host (``//host``, ``/\\host``, ``/%5chost``,
    ``/\\t/host``, ``https://host``, ``javascript:``)."""
    for _ in range(_MAX_DECODINGS + 1):
        if not _plain_path(value):
            return False
        decoded = unquote(value)
        if decoded == value:
            return True
        value = decoded
    return False
