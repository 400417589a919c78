"""Files a tenant uploads for its branding (the logo), kept in PostgreSQL beside its other data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import Base, TenantOwned, utcnow


class TenantAsset(TenantOwned, Base):
    """An image of the tenant's (its logo), served at ``/branding/<id>``."""

    __tablename__ = "tenant_assets"

    kind: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
