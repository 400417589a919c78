"""The event catalog as Markdown: ``docs/events.md`` is generated from the same declarations as
``GET /api/v1/events/catalog`` (``inopsio events-catalog --write docs/events.md``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from inopsio.events.schemas import ANY_MEMBER, EventType

START = "<!-- events:catalog:start -->"
END = "<!-- events:catalog:end -->"


def who_may_read(event_type: EventType) -> str:
    """One sentence: the permission a reader needs, and the row-level rule when there is one."""
    needed = "any member of the tenant" if event_type.permission == ANY_MEMBER else f"`{event_type.permission}`"
    sentence = f"Read with {needed}"
    if event_type.rule_summary is not None:
        rule = event_type.rule_summary.rstrip(".")
        sentence += f"; row-level rule: {rule[:1].lower()}{rule[1:]}"
    return sentence + "."


def render_markdown(types: Iterable[EventType]) -> str:
    """One section per event type: its module, description, who may read it and the JSON Schema of its data."""
    lines = [START, "", "## Catalog", ""]
    ordered = sorted(types, key=lambda t: t.name)
    if not ordered:
        lines.append("No event types are declared by the loaded plugins.")
    for event_type in ordered:
        lines += [
            f"### `{event_type.name}`",
            "",
            f"Module `{event_type.name.split('.', 1)[0]}`. {event_type.description}.",
            "",
            who_may_read(event_type),
            "",
            "```json",
            json.dumps(event_type.json_schema(), indent=2, sort_keys=True),
            "```",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def write_into(path: Path, types: Iterable[EventType]) -> bool:
    """Replace the catalog section of ``path``; returns whether the file changed."""
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    updated = before + render_markdown(types) + after
    if updated == text:
        return False
    path.write_text(updated)
    return True
