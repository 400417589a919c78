"""Outgoing webhooks against a real HTTP receiver: signed deliveries, retries with backoff, 410 Gone,
the test ping, the attempt log, tenant isolation, refusing private targets in production, and
carrying only the events the subscription's owner may read."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from inopsio.db.base import new_id, utcnow
from inopsio.errors import Problem
from inopsio.events.models import EventRecord, PendingEvent
from inopsio.settings import load_settings
from inopsio.webhooks.delivery import post_signed
from inopsio.webhooks.schemas import WebhookPayload
from inopsio.webhooks.services import validated_url


class Receiver:
    """A real HTTP server on a free local port that records every POST and answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: Status codes to answer with, in order; 200 once they run out.
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                reply = json.dumps({"received": True, "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/inopsio"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/webhooks.md shows it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


async def subscribe(client: Any, headers: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": ["sample.note.*"], "description": "test receiver", **fields}
    response = await client.post("/api/v1/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def create_note(client: Any, headers: dict[str, str], title: str = "Hello") -> dict[str, Any]:
    response = await client.post("/api/v1/sample/notes", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def attempts_of(client: Any, headers: dict[str, str], subscription_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/webhooks/{subscription_id}/attempts", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_a_subscribed_url_receives_each_event_once_signed_with_the_secret_shown_at_creation(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, drain_events: Any, run_jobs: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    assert created["secret"].startswith("whsec_")
    note = await create_note(client, admin)
    await drain_events()
    await run_jobs()

    [request] = receiver.requests
    headers = request["headers"]
    assert request["path"] == "/hooks/inopsio"
    assert headers["Content-Type"] == "application/json"
    assert verify(created["secret"], headers["Inopsio-Signature"], request["body"])
    assert not verify("whsec_not-the-secret", headers["Inopsio-Signature"], request["body"])
    payload = json.loads(request["body"])
    assert payload["type"] == headers["Inopsio-Event-Type"] == "sample.note.created"
    assert payload["id"] == headers["Inopsio-Event-Id"]
    assert payload["tenant_id"] == str(tenant.id)
    assert payload["data"] == {"note_id": note["id"], "title": "Hello"}
    assert set(payload) == {"id", "type", "tenant_id", "occurred_at", "data"}

    # The bus delivers at least once: the same event offered again queues no second request.
    async with kernel.db.session(tenant.id) as session:
        event_id = (await session.execute(select(EventRecord.id).where(EventRecord.id == payload["id"]))).scalar_one()
        session.add(PendingEvent(event_id=event_id, tenant_id=tenant.id))
    await drain_events()
    await run_jobs()
    assert len(receiver.requests) == 1

    [attempt] = await attempts_of(client, admin, created["id"])
    assert attempt["outcome"] == "delivered"
    assert attempt["status_code"] == 200
    assert attempt["event_id"] == payload["id"]
    assert isinstance(attempt["response_ms"], int)
    assert attempt["response_body"] == '{"received": true, "status": 200}'


async def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    client: Any, make_tenant: Any, sign_in: Any, drain_events: Any, run_jobs: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    receiver.statuses = [500, 503]
    await create_note(client, admin)
    await drain_events()
    await run_jobs()

    assert len(receiver.requests) == 3
    assert len({r["headers"]["Inopsio-Event-Id"] for r in receiver.requests}) == 1
    assert [r["headers"]["Inopsio-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    for request in receiver.requests:  # each try is signed afresh
        assert verify(created["secret"], request["headers"]["Inopsio-Signature"], request["body"])
    attempts = await attempts_of(client, admin, created["id"])
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (3, 200, "delivered"),
        (2, 503, "retrying"),
        (1, 500, "retrying"),
    ]
    assert all(isinstance(a["response_ms"], int) and a["response_ms"] >= 0 for a in attempts)
    # Backoff: the third try waited longer after the second than the second after the first.
    at = sorted(a["at"] for a in attempts)
    assert at[0] < at[1] < at[2]


async def test_a_delivery_is_given_up_and_marked_failed_after_the_retry_window(
    client: Any,
    kernel: Any,
    make_tenant: Any,
    sign_in: Any,
    drain_events: Any,
    run_jobs: Any,
    receiver: Receiver,
    monkeypatch: Any,
) -> None:
    # Retries 0.2 s, 0.4 s, ... apart: a 0.3 s window allows one retry, then it gives up.
    monkeypatch.setattr(kernel.settings, "webhook_retry_window_seconds", 0.3)
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    receiver.statuses = [500] * 10
    await create_note(client, admin)
    await drain_events()
    result = await run_jobs()

    assert len(receiver.requests) == 2
    assert result.failed >= 1
    attempts = await attempts_of(client, admin, created["id"])
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(2, "failed"), (1, "retrying")]
    subscription = (await client.get(f"/api/v1/webhooks/{created['id']}", headers=admin)).json()
    assert subscription["enabled"] is True  # one failed delivery does not switch a subscription off


async def test_410_gone_disables_the_subscription(
    client: Any, make_tenant: Any, sign_in: Any, drain_events: Any, run_jobs: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    receiver.statuses = [410]
    await create_note(client, admin)
    await drain_events()
    await run_jobs()
    assert len(receiver.requests) == 1

    subscription = (await client.get(f"/api/v1/webhooks/{created['id']}", headers=admin)).json()
    assert subscription["enabled"] is False
    assert "410" in subscription["disabled_reason"]
    [attempt] = await attempts_of(client, admin, created["id"])
    assert (attempt["status_code"], attempt["outcome"]) == (410, "disabled")
    audit = (await client.get("/api/v1/audit", params={"action": "webhook.disabled"}, headers=admin)).json()
    assert [e["details"]["subscription_id"] for e in audit["items"]] == [created["id"]]

    # Switched off: later events are not sent; switched on again, they are.
    await create_note(client, admin, "while disabled")
    await drain_events()
    await run_jobs()
    assert len(receiver.requests) == 1
    enabled = await client.patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": True}, headers=admin)
    assert enabled.status_code == 200
    assert enabled.json()["disabled_reason"] is None
    await create_note(client, admin, "enabled again")
    await drain_events()
    await run_jobs()
    assert len(receiver.requests) == 2


async def test_ping_sends_a_signed_test_delivery_at_once_and_returns_its_attempt(
    client: Any, make_tenant: Any, sign_in: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    response = await client.post(f"/api/v1/webhooks/{created['id']}/ping", headers=admin)
    assert response.status_code == 200, response.text
    attempt = response.json()
    assert (attempt["event_type"], attempt["status_code"], attempt["outcome"]) == ("webhook.ping", 200, "delivered")
    assert isinstance(attempt["response_ms"], int)

    [request] = receiver.requests
    assert request["headers"]["Inopsio-Event-Type"] == "webhook.ping"
    assert verify(created["secret"], request["headers"]["Inopsio-Signature"], request["body"])
    payload = json.loads(request["body"])
    assert payload["id"] == attempt["event_id"]
    assert payload["data"]["subscription_id"] == created["id"]
    assert await attempts_of(client, admin, created["id"]) == [attempt]

    receiver.statuses = [500]
    failed = (await client.post(f"/api/v1/webhooks/{created['id']}/ping", headers=admin)).json()
    assert (failed["status_code"], failed["outcome"]) == (500, "failed")


async def test_attempts_are_listed_newest_first_page_by_page(
    client: Any, make_tenant: Any, sign_in: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    sent = [(await client.post(f"/api/v1/webhooks/{created['id']}/ping", headers=admin)).json()["id"] for _ in range(3)]
    url = f"/api/v1/webhooks/{created['id']}/attempts"
    first = (await client.get(url, params={"limit": 2}, headers=admin)).json()
    assert [a["id"] for a in first["items"]] == sent[::-1][:2]
    second = (await client.get(url, params={"limit": 2, "before": first["next_before"]}, headers=admin)).json()
    assert [a["id"] for a in second["items"]] == [sent[0]]
    assert second["next_before"] is None


async def test_the_secret_is_shown_at_creation_and_rotation_only_and_rotation_changes_the_signature(
    client: Any, make_tenant: Any, sign_in: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    created = await subscribe(client, admin, receiver.url)
    listed = (await client.get("/api/v1/webhooks", headers=admin)).json()
    one = (await client.get(f"/api/v1/webhooks/{created['id']}", headers=admin)).json()
    patched = (
        await client.patch(f"/api/v1/webhooks/{created['id']}", json={"description": "renamed"}, headers=admin)
    ).json()
    for shown in (*listed, one, patched):
        assert "secret" not in shown
        assert created["secret"] not in json.dumps(shown)
    assert patched["description"] == "renamed"

    rotated = await client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != created["secret"]
    await client.post(f"/api/v1/webhooks/{created['id']}/ping", headers=admin)
    request = receiver.requests[-1]
    assert verify(new_secret, request["headers"]["Inopsio-Signature"], request["body"])
    assert not verify(created["secret"], request["headers"]["Inopsio-Signature"], request["body"])
    actions = (await client.get("/api/v1/audit", params={"action": "webhook.*"}, headers=admin)).json()["items"]
    assert {"webhook.created", "webhook.updated", "webhook.secret_rotated"} <= {e["action"] for e in actions}


async def test_only_matching_event_types_are_sent_and_unknown_types_are_refused(
    client: Any, make_tenant: Any, sign_in: Any, drain_events: Any, run_jobs: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    refused = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "event_types": ["sample.nothing.*", "crm.x.y"]}, headers=admin
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/event_types/0", "/event_types/1"]
    exact = await subscribe(client, admin, receiver.url + "/exact", event_types=["sample.note.created"])
    assert exact["event_types"] == ["sample.note.created"]
    await subscribe(client, admin, receiver.url + "/off", enabled=False)
    await create_note(client, admin)
    await drain_events()
    await run_jobs()
    assert [r["path"] for r in receiver.requests] == ["/hooks/inopsio/exact"]


async def test_another_tenant_can_neither_see_nor_change_a_subscription(
    client: Any, make_tenant: Any, sign_in: Any, receiver: Receiver
) -> None:
    tenant_a, tenant_b = await make_tenant(), await make_tenant()
    admin_a, admin_b = await sign_in(tenant_a, "admin"), await sign_in(tenant_b, "admin")
    created = await subscribe(client, admin_a, receiver.url)
    base = f"/api/v1/webhooks/{created['id']}"
    assert (await client.get("/api/v1/webhooks", headers=admin_b)).json() == []
    for method, path, body in (
        ("GET", base, None),
        ("PATCH", base, {"enabled": False}),
        ("DELETE", base, None),
        ("POST", base + "/ping", None),
        ("POST", base + "/rotate-secret", None),
        ("GET", base + "/attempts", None),
    ):
        response = await client.request(method, path, json=body, headers=admin_b)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["type"] == "urn:inopsio:problem:not-found"
    assert receiver.requests == []
    assert (await client.get(base, headers=admin_a)).json()["enabled"] is True

    member = await sign_in(tenant_a, "member")
    assert (await client.get("/api/v1/webhooks", headers=member)).status_code == 403
    assert (await client.delete(base, headers=admin_a)).status_code == 204
    assert (await client.get(base, headers=admin_a)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "https://127.0.0.1/hooks",
        "http://10.0.0.1/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hooks",
        "https://localhost/hooks",
        "http://example.com/hooks",  # public, but production needs https
        "ftp://example.com/hooks",
    ],
)
async def test_production_refuses_private_loopback_link_local_and_plain_http_urls(url: str) -> None:
    production = load_settings({}, environment="production", secret_key="s" * 40)
    with pytest.raises(Problem) as refused:
        await validated_url(url, production)
    assert refused.value.status_code == 422
    assert refused.value.code == "unsafe-url"
    assert refused.value.members["errors"][0]["pointer"] == "/url"


async def test_production_checks_the_address_again_at_delivery_time(receiver: Receiver) -> None:
    """DNS answers change: a delivery re-checks its target and sends nothing to a private address."""
    production = load_settings({}, environment="production", secret_key="s" * 40)
    payload = WebhookPayload(id=new_id(), type="webhook.ping", tenant_id=new_id(), occurred_at=utcnow(), data={})
    response = await post_signed(production, receiver.url.replace("http:", "https:"), "whsec_x", payload, attempt=1)
    assert response.status_code is None
    assert response.error is not None
    assert "not a public address" in response.error
    assert receiver.requests == []


async def test_a_test_installation_accepts_a_local_http_receiver(receiver: Receiver) -> None:
    test_settings = load_settings({}, environment="test")
    assert await validated_url(f" {receiver.url} ", test_settings) == receiver.url


AUDIT = "kernel.audit.recorded"


async def user_id_of(client: Any, headers: dict[str, str]) -> str:
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return str(me.json()["user_id"])


async def test_a_webhook_set_up_by_an_admin_stops_carrying_audit_entries_once_the_admin_is_demoted(
    client: Any, make_tenant: Any, sign_in: Any, drain_events: Any, run_jobs: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    owner, admin = await sign_in(tenant, "owner"), await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    await drain_events()
    body = {"url": receiver.url, "event_types": [AUDIT, "sample.note.*"]}
    created = await client.post("/api/v1/webhooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] == admin_id
    await sign_in(tenant, "viewer")  # an audit entry the admin may read
    await drain_events()
    await run_jobs()
    assert AUDIT in {json.loads(r["body"])["type"] for r in receiver.requests}

    demoted = await client.patch(f"/api/v1/members/{admin_id}", json={"role": "member"}, headers=owner)
    assert demoted.status_code == 200, demoted.text
    receiver.requests.clear()
    await sign_in(tenant, "viewer")
    note = await client.post("/api/v1/sample/notes", json={"title": "after"}, headers=owner)
    assert note.status_code == 201, note.text
    await drain_events()
    await run_jobs()
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == ["sample.note.created"]


async def test_subscribing_to_an_event_type_the_caller_may_not_read_is_refused(
    client: Any, kernel: Any, make_tenant: Any, sign_in: Any, receiver: Receiver
) -> None:
    tenant = await make_tenant()
    admin = await sign_in(tenant, "admin")
    admin_id = await user_id_of(client, admin)
    # An admin's key that may manage webhooks but not read the audit log.
    _, secret = await kernel.identity.api_keys.create(tenant.id, admin_id, "hooks", ["kernel.webhooks.write"], None)
    key = {"X-Tenant": tenant.slug, "Authorization": f"Bearer {secret}"}
    for patterns in ([AUDIT], ["kernel.*"], ["*"]):
        response = await client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "event_types": patterns}, headers=key
        )
        assert response.status_code == 422, (patterns, response.text)
        problem = response.json()
        assert problem["type"].endswith("unreadable-event-type")
        assert problem["errors"][0]["pointer"] == "/event_types/0"
    accepted = await client.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["*"]}, headers=admin)
    assert accepted.status_code == 201, accepted.text
    # Left enabled, it would take this tenant's pending events to a receiver that is gone when the
    # test ends, and their retries would hold up every later test that drains the job queue.
    removed = await client.delete(f"/api/v1/webhooks/{accepted.json()['id']}", headers=admin)
    assert removed.status_code == 204, removed.text
