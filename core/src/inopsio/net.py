"""Outgoing HTTP to addresses that tenants or admins choose (OIDC issuers, webhooks, workflow HTTP nodes).

In production such a request must never reach the installation's own network: loopback, private,
link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast or reserved addresses
are refused (SSRF). Development and test installations may call local servers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from inopsio.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(ValueError):
    """A URL that outgoing requests must not be sent to; the message says why."""


def is_public_address(address: IPAddress) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as the IPv4 inside)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_unspecified or address.is_reserved)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrlError(f"the host {host!r} cannot be resolved") from exc
    # Drop an IPv6 zone ("fe80::1%eth0"): the address itself decides.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_public_url(url: str, settings: Settings) -> None:
    """Raise :class:`UnsafeUrlError` unless ``url`` is http(s) and, in production, reaches only public addresses.

    Every address the host resolves to is checked, so a name pointing at both a public and a private
    address is refused.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrlError(f"{url!r} is not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("only http and https URLs may be called")
    host = parts.hostname
    if not host:
        raise UnsafeUrlError("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrlError("the URL must not carry credentials")
    if not settings.is_production:
        return
    addresses = await resolve(host, port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise UnsafeUrlError(f"the host {host!r} has no address")
    for address in addresses:
        if not is_public_address(address):
            raise UnsafeUrlError(f"{host} resolves to {address}, which is not a public address")


def outbound_client(settings: Settings, *, timeout: float = 10.0, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client that checks every request (redirects included) with :func:`check_public_url`.

    The check resolves the name before httpx connects and httpx resolves it again, so a DNS server
    that changes its answer in between (rebinding) is not stopped here; keep egress firewalled too.
    """

    async def check(request: httpx.Request) -> None:
        await check_public_url(str(request.url), settings)

    hooks: dict[str, list[Any]] = {"request": [check]}
    return httpx.AsyncClient(timeout=timeout, event_hooks=hooks, follow_redirects=False, **kwargs)
