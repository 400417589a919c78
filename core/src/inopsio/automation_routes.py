"""``GET /api/v1/automation/node-types``: the workflow node types the tenant's enabled modules offer."""

from __future__ import annotations

from typing import Any

from litestar import get

from inopsio import hookimpl
from inopsio.automation import NodeTypeOut
from inopsio.deps import CurrentTenant, KernelDep


@get("/api/v1/automation/node-types", tags=["automation"])
async def list_node_types(kernel: KernelDep, tenant: CurrentTenant) -> list[NodeTypeOut]:
    """Every trigger, action and condition of the modules this tenant has enabled, with its config schema."""
    out = []
    for name in sorted(kernel.node_types):
        module, node = kernel.node_types[name]
        if module == "kernel" or tenant.module_enabled(module):
            out.append(NodeTypeOut(module=module, **node.describe()))
    return out


@hookimpl
def register_routes(register: Any) -> None:
    register(list_node_types)
