"""Two-factor API: enrol a TOTP authenticator, confirm it, turn it off, renew recovery codes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, post
from litestar.params import JSONBody

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.identity.authentication import require_user
from inopsio.identity.controllers import Password, client_of
from inopsio.identity.totp import TotpEnrolment

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class TotpCodeIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Code


class TotpDisableIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code | None = None
    password: Password | None = None


class RecoveryCodesOut(msgspec.Struct, kw_only=True):
    #: Shown once: only their digests are stored. Each signs in once in place of a code.
    recovery_codes: list[str]


class TotpController(Controller):
    path = "/api/v1/me/totp"
    tags = ["me"]

    @post("/", status_code=200)
    async def start(self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant) -> TotpEnrolment:
        """Start enrolment: a new secret as an ``otpauth://`` URI and its QR code. Off until confirmed."""
        _, user_id = require_user(request)
        return await kernel.identity.totp.start(tenant, user_id)

    @post("/confirm", status_code=200)
    async def confirm(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[TotpCodeIn]
    ) -> RecoveryCodesOut:
        """Turn 2FA on with a code from the authenticator; returns ten recovery codes, shown once.

        Your other sessions end, in every tenant (they were opened without a second factor), and the
        audit log says so; this one stays: refresh its token to carry the second factor.
        """
        principal, user_id = require_user(request)
        codes = await kernel.identity.totp.confirm(
            tenant, user_id, data.code, client_of(request), keep_session=principal.session_id
        )
        return RecoveryCodesOut(recovery_codes=codes)

    @delete("/", status_code=204)
    async def disable(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[TotpDisableIn]
    ) -> None:
        """Turn 2FA off, with a current code or your password; the recovery codes are deleted."""
        _, user_id = require_user(request)
        await kernel.identity.totp.disable(tenant, user_id, client_of(request), code=data.code, password=data.password)

    @post("/recovery-codes", status_code=200)
    async def regenerate_recovery_codes(
        self, request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, data: JSONBody[TotpCodeIn]
    ) -> RecoveryCodesOut:
        """Replace all recovery codes with ten new ones (the old ones stop working)."""
        _, user_id = require_user(request)
        codes = await kernel.identity.totp.regenerate_recovery_codes(tenant, user_id, data.code, client_of(request))
        return RecoveryCodesOut(recovery_codes=codes)
