"""Names to annotate handler parameters with, so Litestar injects the kernel's dependencies.

``async def handler(tenant: CurrentTenant, db_session: DbSession) -> ...``: the parameter's
name chooses the dependency (``kernel``, ``tenant``, ``db_session``).
"""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.kernel import Kernel
from inopsio.tenancy.schemas import TenantInfo

KernelDep: TypeAlias = NamedDependency[Kernel]
CurrentTenant: TypeAlias = NamedDependency[TenantInfo]
DbSession: TypeAlias = NamedDependency[AsyncSession]

__all__ = ["CurrentTenant", "DbSession", "KernelDep"]
