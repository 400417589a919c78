"""Every API error is an RFC 9457 problem document, and no stack trace ever reaches a client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import psycopg
import pytest_asyncio
from litestar import Response, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from inopsio import hookimpl
from inopsio.app import create_app
from inopsio.errors import PROBLEM_MEDIA_TYPE, Problem
from inopsio.settings import Settings

SMALL_BODY_LIMIT = 1000


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a problem document with ``status`` (and type ``code``); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if code is not None:
        assert body["type"] == f"urn:inopsio:problem:{code}", body
    return body


class FaultyPlugin:
    """Routes that fail in the ways a handler can: an unexpected exception and a deliberate problem."""

    INOPSIO_PLUGIN_NAME = "faulty"

    @staticmethod
    @get("/api/v1/faulty/crash", opt={"tenancy": "none"})
    async def crash() -> None:
        raise RuntimeError("secret detail: password=hunter2")

    @staticmethod
    @get("/api/v1/faulty/teapot", opt={"tenancy": "none"})
    async def teapot() -> None:
        raise Problem(418, "teapot", "Only tea here.", title="I'm a teapot", kettle="on")

    @staticmethod
    @post("/api/v1/faulty/echo", opt={"tenancy": "none"})
    async def echo(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        return data

    @hookimpl
    def register_routes(self, register: Any) -> None:
        register(self.crash)
        register(self.teapot)
        register(self.echo)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def faulty_client(inopsio_migrated: Settings) -> AsyncIterator[Any]:
    """A client on an app with the faulty plugin and a small body limit."""
    settings = msgspec.structs.replace(inopsio_migrated, max_body_bytes=SMALL_BODY_LIMIT)
    app = create_app(settings, plugins=[FaultyPlugin()])
    async with AsyncTestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def tenant_headers(make_tenant: Any, sign_in: Any) -> dict[str, str]:
    """Headers of a tenant's signed-in owner, so requests get past authentication to the body."""
    return dict(await sign_in(await make_tenant()))


async def test_unknown_route_answers_404_problem(client: Any) -> None:
    response = await client.get("/api/v1/no/such/thing")
    body = assert_problem(response, 404, "not-found")
    assert body["instance"] == "/api/v1/no/such/thing"


async def test_unknown_route_of_a_tenant_answers_404_problem(client: Any, tenant_headers: dict[str, str]) -> None:
    assert_problem(await client.get("/api/v1/sample/nope/nope", headers=tenant_headers), 404, "not-found")


async def test_malformed_json_body_answers_400_problem(client: Any, tenant_headers: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/sample/notes",
        content=b'{"title": "unfinished',
        headers={**tenant_headers, "Content-Type": "application/json"},
    )
    body = assert_problem(response, 400, "malformed-json")
    assert "JSON" in body["detail"]


async def test_wrong_types_answer_400_problem_pointing_at_the_field(
    client: Any, tenant_headers: dict[str, str]
) -> None:
    response = await client.post("/api/v1/sample/notes", json={"title": 42}, headers=tenant_headers)
    body = assert_problem(response, 400, "validation-error")
    assert body["errors"], body
    assert "/title" in [e.get("pointer") for e in body["errors"]]
    assert all(e["detail"] for e in body["errors"])


async def test_missing_required_field_answers_400_problem(client: Any, tenant_headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/sample/notes", json={"body": "no title"}, headers=tenant_headers)
    body = assert_problem(response, 400, "validation-error")
    assert "title" in body["detail"] + str(body["errors"])


async def test_unknown_field_answers_400_problem(client: Any, tenant_headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/sample/notes", json={"title": "x", "colour": "red"}, headers=tenant_headers)
    body = assert_problem(response, 400, "validation-error")
    assert "colour" in body["detail"] + str(body["errors"])


async def test_bad_path_parameter_answers_a_problem_not_a_crash(client: Any, tenant_headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/sample/notes/not-a-uuid", headers=tenant_headers)
    assert response.status_code in (400, 404)
    assert_problem(response, response.status_code)


async def test_bad_query_parameter_answers_400_problem(client: Any, tenant_headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/sample/notes", params={"limit": "lots"}, headers=tenant_headers)
    body = assert_problem(response, 400, "validation-error")
    assert "limit" in body["detail"] + str(body["errors"])


async def test_method_not_allowed_answers_405_problem(client: Any) -> None:
    response = await client.delete("/health/live")
    body = assert_problem(response, 405, "method-not-allowed")
    assert "DELETE" in body["detail"]


async def test_tenant_scoped_route_without_a_tenant_answers_400_tenant_required(client: Any) -> None:
    body = assert_problem(await client.get("/api/v1/tenant"), 400, "tenant-required")
    assert "X-Tenant" in body["detail"]


async def test_plugin_route_without_a_tenant_answers_400_tenant_required(client: Any) -> None:
    assert_problem(await client.get("/api/v1/sample/notes"), 400, "tenant-required")


async def test_body_larger_than_the_limit_answers_413_problem(faulty_client: Any) -> None:
    response = await faulty_client.post(
        "/api/v1/faulty/echo",
        content=b'{"x": "' + b"a" * (SMALL_BODY_LIMIT * 2) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413, "request-too-large")


async def test_body_within_the_limit_is_accepted(faulty_client: Any) -> None:
    response = await faulty_client.post("/api/v1/faulty/echo", json={"x": "a" * 100})
    assert response.status_code == 201, response.text
    assert response.json() == {"x": "a" * 100}


async def test_exception_in_a_handler_answers_500_problem_without_its_details(faulty_client: Any) -> None:
    response = await faulty_client.get("/api/v1/faulty/crash")
    assert_problem(response, 500, "internal-error")
    assert "secret detail" not in response.text
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert ".py" not in response.text


async def test_internal_error_gives_the_client_a_request_id_to_quote(faulty_client: Any) -> None:
    body = (await faulty_client.get("/api/v1/faulty/crash")).json()
    assert isinstance(body.get("request_id"), str)
    assert body["request_id"]
    again = (await faulty_client.get("/api/v1/faulty/crash")).json()
    assert again["request_id"] != body["request_id"]


async def test_problem_raised_by_a_handler_keeps_its_type_title_and_extra_members(faulty_client: Any) -> None:
    body = assert_problem(await faulty_client.get("/api/v1/faulty/teapot"), 418, "teapot")
    assert body["title"] == "I'm a teapot"
    assert body["detail"] == "Only tea here."
    assert body["kettle"] == "on"
    assert body["instance"] == "/api/v1/faulty/teapot"


async def test_database_unreachable_for_a_read_answers_503_problem(
    client: Any, kernel: Any, make_tenant: Any, monkeypatch: Any
) -> None:
    """The one-round-trip reader talks to psycopg directly: its connection errors are a 503 to retry."""
    tenant = await make_tenant()
    note_id = uuid.uuid4()

    async def unreachable() -> Any:
        raise psycopg.OperationalError("connection to server at 10.0.0.7 failed: Connection refused")

    monkeypatch.setattr(kernel.db.reads, "_acquire", unreachable)
    response = await client.get(f"/api/v1/sample/public-notes/{note_id}", headers={"X-Tenant": tenant.slug})
    body = assert_problem(response, 503, "database-unavailable")
    assert response.headers["retry-after"] == "5"
    assert "10.0.0.7" not in response.text
    assert "try again" in body["detail"]
    monkeypatch.undo()
    assert_problem(await client.get(f"/api/v1/sample/public-notes/{note_id}", headers={"X-Tenant": tenant.slug}), 404)


async def test_nul_in_a_readers_text_answers_400_problem(
    client: Any, kernel: Any, make_tenant: Any, monkeypatch: Any
) -> None:
    """psycopg refuses NUL in a text parameter before sending anything: the same 400 as through a session."""
    tenant = await make_tenant()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

    monkeypatch.setattr(kernel.db.reads, "fetch", refuse)
    response = await client.get(f"/api/v1/sample/public-notes/{uuid.uuid4()}", headers={"X-Tenant": tenant.slug})
    assert_problem(response, 400, "invalid-text")


async def test_a_plugins_render_error_answers_before_the_kernels_pages_and_problem_documents(
    inopsio_migrated: Settings,
) -> None:
    class Kiosk:
        INOPSIO_PLUGIN_NAME = "kiosk"

        @hookimpl
        def render_error(self, request: Any, status: int, code: str, detail: str, members: Any) -> Any:
            if request.url.path.startswith("/kiosk/"):
                return Response(content=f"{status}: {detail}", status_code=status, media_type="text/plain")
            return None

    app = create_app(inopsio_migrated, plugins=[Kiosk()])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        kiosk = await client.get("/kiosk/screen")
        assert (kiosk.status_code, kiosk.text) == (404, "404: There is nothing at this address.")
        page = await client.get("/nowhere", headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        api = await client.get("/api/v1/nowhere")
        assert api.status_code == 404
        assert api.headers["content-type"] == "application/problem+json"
