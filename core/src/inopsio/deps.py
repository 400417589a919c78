"""Names to annotate handler parameters with, so Litestar injects the kernel's dependencies.

``async def handler(tenant: CurrentTenant, db_session: DbSession) -> ...``: the parameter's
name chooses the dependency (``kernel``, ``tenant``, ``db_session``, ``db_reader``).

``db_session`` is one transaction for the request (reads and writes, committed when the handler
returns); ``db_reader`` runs single-statement reads, each in one round trip (``inopsio.db.reader``).
"""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db.reader import TenantReader
from inopsio.kernel import Kernel
from inopsio.tenancy.schemas import TenantInfo

KernelDep: TypeAlias = NamedDependency[Kernel]
CurrentTenant: TypeAlias = NamedDependency[TenantInfo]
DbSession: TypeAlias = NamedDependency[AsyncSession]
DbReader: TypeAlias = NamedDependency[TenantReader]

__all__ = ["CurrentTenant", "DbReader", "DbSession", "KernelDep"]
