"""Helpers for the CRM tests: a tenant with signed-in members of each role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Member:
    headers: dict[str, str]
    user_id: str
    role: str


@pytest.fixture
def member(client: Any, sign_in: Any) -> Any:
    """``await member(tenant, role)``: a signed-in member with their user id."""

    async def make(tenant: Any, role: str = "owner") -> Member:
        headers = await sign_in(tenant, role)
        me = await client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200, me.text
        return Member(headers=headers, user_id=me.json()["user_id"], role=role)

    return make


@pytest.fixture
def new_lead(client: Any) -> Any:
    """``await new_lead(headers, **fields)``: create a lead (duplicates allowed) and return its JSON."""

    async def make(headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"name": "Ada Lovelace", **fields}
        response = await client.post("/api/v1/crm/leads?allow_duplicate=true", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return make
