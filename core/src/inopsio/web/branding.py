"""Logo upload: ``POST /api/v1/tenant/logo`` (an image, at most 1 MB) and ``GET /branding/<id>``.

The image's type is read from its first bytes, never from what the browser claims: PNG, JPEG, GIF
and WebP only (SVG can carry scripts). It is stored in the tenant's own rows and the tenant's
``branding.logo_url`` then points at it, so the shell shows it at once.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from sqlalchemy import delete, select

from inopsio.deps import CurrentTenant, KernelDep
from inopsio.errors import Problem
from inopsio.identity.authentication import PERMISSION_OPT, PUBLIC_OPT
from inopsio.tenancy.schemas import Branding, TenantSettingsPatch
from inopsio.web.models import TenantAsset

MAX_LOGO_BYTES = 1024 * 1024
SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]


def sniff_image(data: bytes) -> str | None:
    """The image type of ``data`` from its signature, or ``None`` if it is not one we accept."""
    for signature, media_type in SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class LogoOut(msgspec.Struct, kw_only=True):
    logo_url: str
    content_type: str
    size: int


@post(
    "/api/v1/tenant/logo",
    status_code=201,
    tags=["tenant"],
    opt={PERMISSION_OPT: "kernel.settings.write"},
    request_max_body_size=MAX_LOGO_BYTES + 64 * 1024,
)
async def upload_logo(
    kernel: KernelDep,
    tenant: CurrentTenant,
    data: Annotated[UploadFile, Body(media_type=RequestEncodingType.MULTI_PART)],
) -> LogoOut:
    """Upload the tenant's logo (PNG, JPEG, GIF or WebP, at most 1 MB); it replaces the previous one."""
    content = await data.read(MAX_LOGO_BYTES + 1)
    if len(content) > MAX_LOGO_BYTES:
        raise Problem(413, "file-too-large", "The logo may be at most 1 MB.", field="file")
    if not content:
        raise Problem(422, "empty-file", "The file is empty.", field="file")
    media_type = sniff_image(content)
    if media_type is None:
        raise Problem(415, "unsupported-image", "The logo must be a PNG, JPEG, GIF or WebP image.", field="file")
    limit = tenant.quotas.get("upload_bytes", kernel.settings.quotas.upload_bytes)
    if limit is not None and len(content) > limit:
        raise Problem(413, "quota-exceeded", f"Uploads in this workspace are limited to {limit} bytes.")
    async with kernel.db.session(tenant.id) as session:
        await session.execute(delete(TenantAsset).where(TenantAsset.kind == "logo"))
        asset = TenantAsset(
            kind="logo",
            content_type=media_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            data=content,
        )
        session.add(asset)
        await session.flush()
        asset_id = asset.id
    url = f"/branding/{asset_id}"
    branding = Branding(logo_url=url, color=tenant.settings.branding.color)
    await kernel.tenants.update_settings(tenant.id, TenantSettingsPatch(branding=branding))
    return LogoOut(logo_url=url, content_type=media_type, size=len(content))


@get("/branding/{asset_id:uuid}", opt={PUBLIC_OPT: True}, include_in_schema=False)
async def branding_asset(
    request: Request[Any, Any, Any], kernel: KernelDep, tenant: CurrentTenant, asset_id: FromPath[UUID]
) -> Response[bytes]:
    """A tenant's branding image (public: it is shown on the sign-in page)."""
    async with kernel.db.session(tenant.id) as session:
        asset = (await session.execute(select(TenantAsset).where(TenantAsset.id == asset_id))).scalar_one_or_none()
    if asset is None:
        raise Problem(404, "not-found", "There is nothing at this address.")
    return Response(
        asset.data,
        media_type=asset.content_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",  # a new upload gets a new id
            "Content-Security-Policy": "default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )
