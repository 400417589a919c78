"""Public addresses built from ``settings.public_url`` (``https://{tenant}.example.com``): a tenant's own
(links in mail, OIDC callbacks, invoice links) and the platform's (sign-up, the workspace chooser)."""

from __future__ import annotations

import re
from typing import Protocol

from inopsio.settings import Settings
from inopsio.tenancy.schemas import SLUG_PATTERN, TenantInfo

_SLUG = re.compile(SLUG_PATTERN)
_PLACEHOLDER = "{tenant}"


class HasSettings(Protocol):
    """The kernel, or anything else that carries the installation's settings."""

    @property
    def settings(self) -> Settings: ...


def _settings_of(source: Settings | HasSettings) -> Settings:
    return source if isinstance(source, Settings) else source.settings


def _check_path(path: str) -> str:
    if path and not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/'")
    return path


def tenant_url(source: Settings | HasSettings, tenant: TenantInfo | str, path: str = "/") -> str:
    """The address of ``path`` on ``tenant``'s own host: ``public_url`` with ``{tenant}`` set to its slug.

    ``tenant`` is a tenant or its slug; a string that is no slug is refused, so no caller can move
    the link to another host (``evil.com/`` as a slug).
    """
    slug = tenant if isinstance(tenant, str) else tenant.slug
    if not _SLUG.fullmatch(slug):
        raise ValueError(f"{slug!r} is not a tenant slug")
    public_url = _settings_of(source).public_url
    return public_url.replace(_PLACEHOLDER, slug).rstrip("/") + _check_path(path)


def platform_url(source: Settings | HasSettings, path: str = "/") -> str:
    """The address of ``path`` on the platform's own host: ``public_url`` without its ``{tenant}.`` part."""
    public_url = _settings_of(source).public_url
    return re.sub(r"\{tenant\}\.?", "", public_url).rstrip("/") + _check_path(path)
