"""Single-use, expiring tokens sent by mail (password reset; e-mail verification links mailed before
sign-up confirmed addresses itself), and the links to them.

Only a digest of a token is stored. Spending one is a single conditional UPDATE, so two requests
racing with the same token cannot both succeed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from uuid import UUID

from sqlalchemy import update

from inopsio.crypto import digest, new_token
from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity.models import UserToken
from inopsio.tenancy.addresses import platform_url, tenant_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.kernel import Kernel
    from inopsio.tenancy.schemas import TenantInfo

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 (a token purpose, not a secret)
RESET_PASSWORD_LIFETIME = dt.timedelta(hours=1)
TOKEN_PREFIX = "iot_"  # noqa: S105 (the prefix of mailed tokens, not a secret)


def invalid_token() -> Problem:
    return Problem(400, "invalid-token", "This link is not valid: it was already used, has expired or never existed.")


def tenant_link(kernel: Kernel, tenant: TenantInfo, path: str, token: str) -> str:
    """``{public_url}{path}?token=...`` on the tenant's own address."""
    return public_address(kernel, tenant.slug, path, token=token)


def public_address(kernel: Kernel, slug: str | None, path: str, **query: str) -> str:
    """``{public_url}{path}`` on tenant ``slug``'s address, or on the platform's own one (``None``:
    ``public_url`` without its ``{tenant}.`` part, where sign-up and the workspace chooser live)."""
    base = tenant_url(kernel, slug, path) if slug else platform_url(kernel, path)
    return base + (f"?{urlencode(query)}" if query else "")


async def issue(session: AsyncSession, user_id: UUID, purpose: str, lifetime: dt.timedelta) -> str:
    """A new token for ``user_id``; earlier unspent tokens of the same purpose stop working."""
    now = utcnow()
    await session.execute(
        update(UserToken)
        .where(UserToken.user_id == user_id, UserToken.purpose == purpose, UserToken.used_at.is_(None))
        .values(used_at=now)
    )
    token = new_token(TOKEN_PREFIX)
    session.add(UserToken(user_id=user_id, purpose=purpose, token_hash=digest(token), expires_at=now + lifetime))
    await session.flush()
    return token


async def spend(session: AsyncSession, token: str, purpose: str) -> UUID:
    """Mark the token used and return its user, or raise 400 invalid-token (spent, expired, unknown)."""
    now = utcnow()
    user_id = (
        await session.execute(
            update(UserToken)
            .where(
                UserToken.token_hash == digest(token),
                UserToken.purpose == purpose,
                UserToken.used_at.is_(None),
                UserToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(UserToken.user_id)
        )
    ).scalar_one_or_none()
    if user_id is None:
        raise invalid_token()
    return user_id
