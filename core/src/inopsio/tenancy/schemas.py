"""What the API speaks about tenants (msgspec), separate from the ORM model."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies

from inopsio.settings import QuotaLimits
from inopsio.site_paths import holds_space_or_control, is_site_path

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
RESERVED_SLUGS = frozenset(
    {
        "www",
        "api",
        "app",
        "admin",
        "platform",
        "static",
        "assets",
        "mail",
        "smtp",
        "health",
        "status",
        "docs",
        "schema",
        "metrics",
        "auth",
        "login",
        "signup",
        "root",
        "support",
        "help",
        "billing",
    }
)
Slug = Annotated[
    str,
    msgspec.Meta(
        pattern=SLUG_PATTERN,
        min_length=1,
        max_length=63,
        description="Lower-case letters, digits and inner hyphens; the tenant's subdomain.",
    ),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TenantStatus = Literal["active", "suspended"]
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


class Branding(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    #: Checked with :func:`is_logo_url` where settings are written (a 422 naming the field) and where
    #: the logo is shown, not here: a value stored before a check was tightened must still load.
    logo_url: str | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        if self.color is not None and not _COLOR_RE.match(self.color):
            raise ValueError("branding.color must be a colour like #1f6feb")

    @property
    def shown_logo_url(self) -> str | None:
        """The logo address to put in a page or give to clients: None for one a browser could resolve
        off-site (stored before the check was tightened), so it is never shown."""
        return self.logo_url if self.logo_url is not None and is_logo_url(self.logo_url) else None


#: Why a logo address is refused, shown in the problem and in ``docs/tenancy.md``.
LOGO_URL_RULE = "an https:// URL or a path on this site (/...; not //host, a backslash, %5c or a line break)"


def is_logo_url(value: str) -> bool:
    """An ``https://`` address with a host, or a path on this site (:func:`inopsio.site_paths.is_site_path`)."""
    if value.startswith("https://"):
        try:
            host = urlsplit(value).hostname
        except ValueError:  # an unbalanced IPv6 bracket
            return False
        return bool(host) and not holds_space_or_control(value)
    return is_site_path(value)


class TenantSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    display_name: str | None = None
    locale: str = "en"
    timezone: str = "UTC"
    currency: str = "EUR"
    branding: Branding = msgspec.field(default_factory=Branding)
    #: Installed modules this tenant has switched off (their routes answer 404, hooks skip them).
    disabled_modules: list[str] = msgspec.field(default_factory=list)
    #: Members without two-factor authentication may only enrol until they do.
    require_2fa: bool = False

    def __post_init__(self) -> None:
        if not _known_locale(self.locale):
            raise ValueError(f"locale {self.locale!r} is unknown (use a code like en or de_CH)")
        if self.timezone not in _timezones():
            raise ValueError(f"timezone {self.timezone!r} is unknown (use an IANA name like Europe/Paris)")
        if self.currency not in _currencies():
            raise ValueError(f"currency {self.currency!r} is unknown (use an ISO 4217 code like EUR)")
        if self.display_name is not None and len(self.display_name) > 200:
            raise ValueError("display_name is longer than 200 characters")


_CURRENCIES: frozenset[str] | None = None


@functools.cache
def _timezones() -> frozenset[str]:
    # available_timezones() walks the tzdata folder (about 10 ms): once per process is enough.
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=1024)
def _known_locale(locale: str) -> bool:
    try:
        Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return False
    return True


def _currencies() -> frozenset[str]:
    global _CURRENCIES
    if _CURRENCIES is None:
        _CURRENCIES = frozenset(list_currencies())
    return _CURRENCIES


class TenantSettingsPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A partial update of :class:`TenantSettings`: only the fields given change."""

    display_name: str | msgspec.UnsetType | None = msgspec.UNSET
    locale: str | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType = msgspec.UNSET
    branding: Branding | msgspec.UnsetType = msgspec.UNSET
    disabled_modules: list[str] | msgspec.UnsetType = msgspec.UNSET
    require_2fa: bool | msgspec.UnsetType = msgspec.UNSET


class TenantInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    slug: str
    name: str
    status: TenantStatus
    settings: TenantSettings
    quotas: dict[str, int | None]
    created_at: dt.datetime
    updated_at: dt.datetime
    suspended_reason: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def module_enabled(self, module: str) -> bool:
        return module not in self.settings.disabled_modules


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    slug: Slug
    name: Name
    settings: TenantSettings | None = None


class TenantSuspend(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


QuotaOverrides = dict[str, Annotated[int, msgspec.Meta(ge=0)] | None]


def validate_quota_names(overrides: dict[str, int | None]) -> None:
    unknown = sorted(set(overrides) - set(QuotaLimits.__struct_fields__))
    if unknown:
        raise ValueError(f"unknown quota(s): {', '.join(unknown)} (known: {', '.join(QuotaLimits.__struct_fields__)})")
