"""The one Jinja2 set-up pages and mail share: strict undefined names and the locale-aware filters.

Pages and mail build their environments here, so a filter or option added for one is there for the
other. Templates a tenant writes (a mail text, an invoice footer) are untrusted: they go through
:func:`sandboxed_environment`, which refuses access to Python internals.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Any

import jinja2
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2.sandbox import SandboxedEnvironment


def money(value: Any, currency: str = "EUR", locale: str = "en") -> str:
    return str(format_currency(value, currency, locale=locale.replace("-", "_")))


def number(value: Any, locale: str = "en") -> str:
    return str(format_decimal(value, locale=locale.replace("-", "_")))


def datetime(value: dt.datetime | None, locale: str = "en", tz: str = "UTC") -> str:
    if value is None:
        return ""
    zone = dt.UTC if tz == "UTC" else zoneinfo.ZoneInfo(tz)
    return str(format_datetime(value, "medium", tzinfo=zone, locale=locale))


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters["money"] = money
    env.filters["number"] = number
    env.filters["datetime"] = datetime
    return env


#: ``autoescape``: always given by the caller (HTML escaping is a decision, never a default).
Autoescape = bool | Callable[[str | None], bool]


def environment(loader: jinja2.BaseLoader, *, autoescape: Autoescape, **options: Any) -> jinja2.Environment:
    """An environment for the installation's own templates (pages, mail)."""
    # The callers choose escaping explicitly: pages always, mail by file extension (HTML parts only).
    env = jinja2.Environment(loader=loader, autoescape=autoescape, undefined=jinja2.StrictUndefined, **options)  # noqa: S701
    return _configure(env)


def sandboxed_environment(
    loader: jinja2.BaseLoader | None = None, *, autoescape: Autoescape, **options: Any
) -> SandboxedEnvironment:
    """An environment for templates a tenant wrote: same filters, no access to Python internals."""
    env = SandboxedEnvironment(loader=loader, autoescape=autoescape, undefined=jinja2.StrictUndefined, **options)
    _configure(env)
    return env
