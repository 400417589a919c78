"""The web shell: server-rendered pages (Jinja2 + htmx) that every module lives in.

Plugins contribute with ``register_web_assets`` (templates, static files), ``register_menu`` and
``register_dashboard_cards``, and serve their pages as routes under ``/<plugin>/`` that return
``await page(request, "<plugin>/<template>.html", {...})``. See ``docs/web.md``.
"""

from inopsio.web.contributions import DashboardCard, MenuEntry, WebAssets
from inopsio.web.render import fragment, page, redirect, viewer_of

__all__ = ["DashboardCard", "MenuEntry", "WebAssets", "fragment", "page", "redirect", "viewer_of"]
