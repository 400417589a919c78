"""Usage counters, tenant-owned: daily counts (API calls, workflow runs, ...) and gauges (storage, users)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from inopsio.db.base import Base, TenantScoped


class DailyUsage(TenantScoped, Base):
    __tablename__ = "tenant_usage_daily"

    day: Mapped[dt.date] = mapped_column(primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageGauge(TenantScoped, Base):
    __tablename__ = "tenant_usage_gauges"

    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
