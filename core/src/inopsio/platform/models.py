"""Platform operator credentials: bearer tokens stored as SHA-256 digests, outside any tenant."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import APP_PRIVILEGES, Base, new_id, utcnow


class OperatorToken(Base):
    __tablename__ = "platform_operator_tokens"
    __table_args__ = ({"info": {APP_PRIVILEGES: "SELECT, INSERT, UPDATE"}},)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
