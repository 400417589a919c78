"""Access tokens: short-lived JWTs (HS256) with the tenant as a claim and a ``kid`` for key rotation."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import jwt
import msgspec

from inopsio.crypto import KeyRing
from inopsio.errors import Problem

ALGORITHM = "HS256"
ISSUER = "inopsio"


class AccessClaims(msgspec.Struct, frozen=True):
    sub: UUID
    tid: UUID
    sid: UUID
    exp: int
    iat: int
    role: str = ""
    #: The user has two-factor authentication (and passed it at sign-in).
    mfa: bool = False


def _invalid(detail: str) -> Problem:
    return Problem(
        401,
        "invalid-token",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="inopsio", error="invalid_token"'},
    )


#: Verified tokens a process remembers before starting afresh.
VERIFIED_KEPT = 20_000


class TokenIssuer:
    def __init__(self, keys: KeyRing, lifetime_seconds: int) -> None:
        self.keys = keys
        self.lifetime = lifetime_seconds
        #: Tokens this process verified: token -> (claims, key id).
        self._verified: dict[str, tuple[AccessClaims, str]] = {}

    def issue(
        self, user_id: UUID, tenant_id: UUID, session_id: UUID, role: str, *, mfa: bool = False
    ) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "sid": str(session_id),
            "role": role,
            "mfa": mfa,
            "iat": now,
            "exp": now + self.lifetime,
        }
        token = jwt.encode(claims, self.keys.current, algorithm=ALGORITHM, headers={"kid": self.keys.current_kid})
        return token, self.lifetime

    def verify(self, token: str) -> AccessClaims:
        """Decode and check a token: known ``kid``, HS256 only, signature, expiry, issuer.

        A client sends the same token on every request until it expires: a token already verified
        here is only checked again for expiry and for its key still being in the key ring.
        """
        known = self._verified.get(token)
        if known is not None:
            claims, kid = known
            if kid in self.keys.keys:
                if claims.exp <= time.time():
                    raise _invalid("The access token has expired; refresh it.")
                return claims
            del self._verified[token]
        claims, kid = self._verify(token)
        if len(self._verified) >= VERIFIED_KEPT:
            self._verified.clear()
        self._verified[token] = (claims, kid)
        return claims

    def _verify(self, token: str) -> tuple[AccessClaims, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("The access token is malformed.") from None
        key = self.keys.keys.get(str(header.get("kid")))
        if key is None or header.get("alg") != ALGORITHM:
            raise _invalid("The access token was not signed by this installation.")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "tid", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("The access token has expired; refresh it.") from None
        except jwt.PyJWTError:
            raise _invalid("The access token is not valid.") from None
        try:
            return msgspec.convert(payload, AccessClaims, strict=False), str(header.get("kid"))
        except msgspec.ValidationError:
            raise _invalid("The access token's claims are not valid.") from None
