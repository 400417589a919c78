"""``docs/plugin-hooks.md`` and ``inopsio.hookspecs`` describe the same hooks, with the same arguments.

A hook nobody documents does not exist for a plugin author; a documented hook the kernel does not
offer is worse. Each hook has a section (signature, arguments, return, when it is called, an example
plugin) and a row in the overview table, and its docstring says the same in short.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from inopsio import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin-hooks.md"
HOOKS = {name: f for name, f in vars(hookspecs).items() if callable(f) and hasattr(f, "inopsio_spec")}


def _arguments(hook: str) -> list[str]:
    return list(inspect.signature(HOOKS[hook]).parameters)


def _sections() -> dict[str, str]:
    """The doc's ``## <identifier>`` sections (the hooks'), by name."""
    parts = re.split(r"(?m)^## ", DOC.read_text())[1:]
    return {part.split("\n", 1)[0]: part for part in parts if re.fullmatch(r"\w+", part.split("\n", 1)[0])}


def _table() -> dict[str, list[str]]:
    """The overview table's hooks and the arguments each row shows."""
    rows = re.findall(r"(?m)^\| `(\w+)\(([^)]*)\)` \|", DOC.read_text())
    return {name: [a.strip() for a in args.split(",") if a.strip()] for name, args in rows}


def _top_level_split(parameters: str) -> list[str]:
    """``a: X[[b, c], d], e: Y`` -> ``["a: X[[b, c], d]", "e: Y"]``: commas outside brackets only."""
    parts, depth, current = [], 0, ""
    for char in parameters:
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def test_every_hook_has_a_section_and_every_section_is_a_hook() -> None:
    sections = set(_sections())
    assert sorted(set(HOOKS) - sections) == [], "hooks without a section in docs/plugin-hooks.md"
    assert sorted(sections - set(HOOKS)) == [], "sections for hooks that hookspecs.py does not declare"


def test_the_overview_table_lists_every_hook_with_its_arguments() -> None:
    table = _table()
    assert sorted(set(HOOKS) - set(table)) == [], "hooks missing from the table"
    assert sorted(set(table) - set(HOOKS)) == [], "table rows for hooks that do not exist"
    for hook, arguments in table.items():
        assert arguments == _arguments(hook), hook


def test_the_contents_link_every_hook() -> None:
    text = DOC.read_text()
    for hook in HOOKS:
        assert f"[{hook}](#{hook})" in text, hook


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_a_hooks_section_shows_its_signature_arguments_return_timing_and_an_example(hook: str) -> None:
    section = _sections()[hook]
    signature = re.search(rf"@hookspec(?:\([^)]*\))?\n(?:async )?def {hook}\((.*?)\) ->", section, re.S)
    assert signature is not None, f"{hook}: no ```python @hookspec def {hook}(...)``` block"
    documented = [re.split(r"[:=]", a)[0].strip() for a in _top_level_split(signature.group(1))]
    assert documented == _arguments(hook), hook
    for label in ("**Arguments.**", "**Returns**", "**When.**"):
        assert label in section, f"{hook}: no {label}"
    assert re.search(rf"@hookimpl(?:\([^)]*\))?\n(?:async )?def {hook}\(", section), f"{hook}: no example plugin"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_a_hooks_docstring_names_its_arguments_return_timing_and_an_example(hook: str) -> None:
    doc = inspect.getdoc(HOOKS[hook]) or ""
    for argument in _arguments(hook):
        assert f"``{argument}" in doc, f"{hook}: docstring does not name ``{argument}``"
    assert "return" in doc.lower(), f"{hook}: docstring does not say what it returns"
    assert re.search(r"\bcalled\b|\bruns\b", doc, re.I), f"{hook}: docstring does not say when it is called"
    assert re.search(r"``[^`]*\([^`]*\)[^`]*``", doc), f"{hook}: docstring shows no example call"
