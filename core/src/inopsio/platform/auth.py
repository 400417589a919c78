"""Who is a platform operator: the holder of an unrevoked operator token.

Tokens are 256-bit random strings, so a SHA-256 digest is a safe way to store them; they are shown
once when created (``inopsio operator create-token``) and can be revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.platform.models import OperatorToken

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler

    from inopsio.db.engine import Database

TOKEN_PREFIX = "iop_"  # noqa: S105 (a public prefix, not a secret)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_operator_token(db: Database, name: str) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with db.session(None) as session:
        session.add(OperatorToken(name=name, token_hash=digest(token)))
    return token


async def revoke_operator_token(db: Database, name: str) -> int:
    async with db.session(None) as session:
        result = await session.execute(
            update(OperatorToken)
            .where(OperatorToken.name == name, OperatorToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


#: The operator console's cookie: the operator token itself, HttpOnly and SameSite=Strict.
OPERATOR_COOKIE = "inopsio_operator"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def operator_csrf(kernel: Any, token: str) -> str:
    """The CSRF token the console's pages send with unsafe requests made on the cookie."""
    from inopsio.crypto import derive, master_secret

    key = derive(master_secret(kernel.settings), "operator-csrf")
    return hmac.new(key, digest(token).encode(), hashlib.sha256).hexdigest()


def _token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The bearer token, or (for the console in a browser) the cookie's, with its CSRF check."""
    auth = connection.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if auth:
        return token if scheme.lower() == "bearer" else ""
    token = connection.cookies.get(OPERATOR_COOKIE, "")
    if token and connection.scope.get("method", "GET") in UNSAFE_METHODS:
        sent = connection.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent, operator_csrf(connection.app.state.kernel, token)):
            raise Problem(403, "csrf-failed", "This request did not come from the operator console's pages.")
    return token


async def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Litestar guard for the platform API: a valid operator bearer token (or console cookie), or 401."""
    token = _token_of(connection)
    if not token.startswith(TOKEN_PREFIX):
        raise Problem(
            401,
            "unauthorized",
            "The platform API needs an operator token: Authorization: Bearer iop_...",
            headers={"WWW-Authenticate": 'Bearer realm="inopsio-platform"'},
        )
    kernel = connection.app.state.kernel
    async with kernel.db.session(None) as session:
        row = (
            await session.execute(
                select(OperatorToken).where(
                    OperatorToken.token_hash == digest(token.strip()), OperatorToken.revoked_at.is_(None)
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise Problem(
                401,
                "unauthorized",
                "This operator token is unknown or revoked.",
                headers={"WWW-Authenticate": 'Bearer realm="inopsio-platform", error="invalid_token"'},
            )
        row.last_used_at = utcnow()
    connection.scope.setdefault("state", {})["operator"] = row.name
