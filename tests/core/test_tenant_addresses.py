"""A tenant's public address comes from ``public_url`` in one place: its slug on the tenant's host, the
path kept as given, and nothing a caller passes can move the link to another host."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inopsio.settings import load_settings
from inopsio.tenancy.addresses import platform_url, tenant_url
from inopsio.tenancy.schemas import SLUG_PATTERN

SETTINGS = load_settings({}, public_url="https://{tenant}.inopsio.example:8443/")
slugs = st.from_regex(SLUG_PATTERN, fullmatch=True)
paths = st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


@given(slugs, paths)
def test_a_tenant_url_is_on_the_tenants_own_host_with_the_path_as_given(slug: str, path: str) -> None:
    url = urlsplit(tenant_url(SETTINGS, slug, path))
    assert url.scheme == "https"
    assert url.hostname == f"{slug}.inopsio.example"
    assert url.port == 8443
    assert url.path == path


@given(paths)
def test_the_platform_url_is_the_public_url_without_the_tenant(path: str) -> None:
    url = urlsplit(platform_url(SETTINGS, path))
    assert (url.hostname, url.port, url.path) == ("inopsio.example", 8443, path)


@pytest.mark.parametrize("slug", ["evil.com/", "a@evil.com", "UPPER", "-dash", "", "a" * 64, "t.x"])
def test_something_that_is_no_slug_is_refused(slug: str) -> None:
    with pytest.raises(ValueError, match="not a tenant slug"):
        tenant_url(SETTINGS, slug, "/")


def test_a_path_must_start_at_the_root() -> None:
    with pytest.raises(ValueError, match="must start with"):
        tenant_url(SETTINGS, "acme", "invoices/1")
    assert tenant_url(SETTINGS, "acme", "") == "https://acme.inopsio.example:8443"


async def test_the_kernel_and_a_tenant_give_the_same_address(kernel: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    expected = kernel.settings.public_url.replace("{tenant}", tenant.slug).rstrip("/") + "/invoices/1"
    assert tenant_url(kernel, tenant, "/invoices/1") == expected
