"""The plugin's one tenant-owned table, and a child table with a tenant-carrying foreign key."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db import Base, TenantOwned, Timestamped, tenant_foreign_key, tenant_table_args


class Note(TenantOwned, Timestamped, Base):
    __tablename__ = "sample_notes"

    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")


class NoteTag(TenantOwned, Base):
    __tablename__ = "sample_note_tags"
    __table_args__ = tenant_table_args(tenant_foreign_key(["note_id"], "sample_notes", ondelete="CASCADE"))

    note_id: Mapped[UUID] = mapped_column()
    tag: Mapped[str] = mapped_column(String(50))
