"""The web shell's registry: templates, static files, menu and cards collected from every plugin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from inopsio import templating
from inopsio.web.assets import AssetManifest
from inopsio.web.contributions import DashboardCard, MenuEntry, WebAssets, check_plugin_name

if TYPE_CHECKING:
    from inopsio.plugins import PluginRegistry

PACKAGE = Path(__file__).resolve().parent.parent
SHELL_TEMPLATES = PACKAGE / "templates" / "shell"
STATIC = PACKAGE / "static"


class WebRegistry:
    def __init__(self, registry: PluginRegistry) -> None:
        self.assets = AssetManifest()
        for namespace in ("shell", "vendor"):
            if (STATIC / namespace).is_dir():
                self.assets.add_folder(namespace, STATIC / namespace)
        loaders: dict[str, jinja2.BaseLoader] = {"shell": jinja2.FileSystemLoader(SHELL_TEMPLATES)}

        def validate_assets(plugin: str, item: Any) -> None:
            if not isinstance(item, WebAssets):
                raise ValueError("register() takes an inopsio.web.WebAssets")
            check_plugin_name(plugin)
            if plugin in ("shell", "vendor"):
                raise ValueError(f"{plugin!r} is reserved for the kernel's own assets")

        for plugin, item in registry.collect("register_web_assets", validate_assets):
            if item.templates is not None:
                loaders[plugin] = jinja2.FileSystemLoader(Path(item.templates))
            if item.static is not None:
                self.assets.add_folder(plugin, Path(item.static))

        def validate_menu(plugin: str, item: Any) -> None:
            if not isinstance(item, MenuEntry):
                raise ValueError("register() takes an inopsio.web.MenuEntry")

        def validate_card(plugin: str, item: Any) -> None:
            if not isinstance(item, DashboardCard):
                raise ValueError("register() takes an inopsio.web.DashboardCard")

        self.menu: list[tuple[str, MenuEntry]] = [
            (registry.module_of(p), e) for p, e in registry.collect("register_menu", validate_menu)
        ]
        self.cards: list[tuple[str, DashboardCard]] = sorted(
            ((registry.module_of(p), c) for p, c in registry.collect("register_dashboard_cards", validate_card)),
            key=lambda pair: (pair[1].order, pair[1].title),
        )
        self.env = templating.environment(
            jinja2.PrefixLoader(loaders, delimiter="/"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.globals["asset_url"] = self.assets.url

    def render(self, template: str, context: dict[str, Any]) -> str:
        return self.env.get_template(template).render(context)

    def menu_for(self, enabled: Any, permissions: set[str] | frozenset[str]) -> list[dict[str, Any]]:
        """Menu sections for a user: entries of enabled modules whose permission they hold."""
        sections: dict[str, list[MenuEntry]] = {}
        for module, entry in self.menu:
            if module != "kernel" and not enabled(module):
                continue
            if entry.permission and entry.permission not in permissions:
                continue
            sections.setdefault(entry.section, []).append(entry)
        return [
            {"title": title, "entries": sorted(entries, key=lambda e: (e.order, e.label))}
            for title, entries in sorted(sections.items(), key=lambda kv: (kv[0] != "", kv[0] == "Admin", kv[0]))
        ]

    def cards_for(self, enabled: Any, permissions: set[str] | frozenset[str]) -> list[DashboardCard]:
        return [
            card
            for module, card in self.cards
            if (module == "kernel" or enabled(module)) and (not card.permission or card.permission in permissions)
        ]
