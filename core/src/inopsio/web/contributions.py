"""What plugins contribute to the web shell: template and static folders, menu entries, dashboard cards.

Each is a frozen msgspec Struct a plugin passes to the matching ``register`` callback (see
``inopsio.hookspecs``). They are validated on arrival, so a wrong one stops start-up naming the plugin.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class WebAssets(msgspec.Struct, frozen=True, kw_only=True):
    """A plugin's page templates and static files.

    Templates are found as ``"<plugin>/<path>"`` (``{% extends "shell/layout.html" %}`` gives the
    page the shell around it); static files are served as ``/static/<plugin>/<path>`` under a
    cache-busting name (``asset_url("<plugin>/board.js")`` in a template gives it). Plain files:
    no front-end build step of the plugin's own.
    """

    templates: Path | None = None
    static: Path | None = None

    def __post_init__(self) -> None:
        for folder in (self.templates, self.static):
            if folder is not None and not Path(folder).is_dir():
                raise ValueError(f"web assets folder {folder} does not exist")


class MenuEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One link in the shell's navigation.

    Shown only to users holding ``permission`` (when set) in tenants that have the plugin enabled.
    Entries with the same ``section`` are grouped under it; ``order`` sorts within a section.
    ``icon`` names one of the shell's icons (e.g. ``users``, ``kanban``, ``invoice``, ``mail``,
    ``flow``, ``shield``, ``chart``, ``settings``); unknown names show a dot.
    """

    label: str
    href: str
    section: str = ""
    permission: str | None = None
    icon: str = ""
    order: int = 100

    def __post_init__(self) -> None:
        if not self.label.strip():
            raise ValueError("a menu entry needs a label")
        if not self.href.startswith("/"):
            raise ValueError(f"menu entry {self.label!r}: href must be a path on this site, got {self.href!r}")


class DashboardCard(msgspec.Struct, frozen=True, kw_only=True):
    """A card on the dashboard home page.

    The shell draws the card's frame with ``title`` and loads its body from ``href`` (an HTML
    fragment the plugin serves under ``/<plugin>/``) with htmx once the page is shown, so one slow
    module never slows the dashboard. Shown only with ``permission`` (when set).
    """

    name: str
    title: str
    href: str
    permission: str | None = None
    order: int = 100
    link: str | None = None  # "open" link under the card, e.g. the module's main page

    def __post_init__(self) -> None:
        if not self.href.startswith("/"):
            raise ValueError(f"dashboard card {self.name!r}: href must be a path on this site")


def check_plugin_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid plugin name for web assets")
    return name
