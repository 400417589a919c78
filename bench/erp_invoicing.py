"""The ERP invoicing benchmark (issue 7): concurrent invoice issues (numbering stays gapless, with
throughput), Stripe webhook handling latency, and the invoice PDF through the full stack.

``.venv/bin/python bench/erp_invoicing.py [--rounds 5] [--webhooks 500] [--workers 2]``. Needs PostgreSQL
and Redis (``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``; defaults: the local servers). Steps:

1. create a fresh database ``inopsio_bench_erp``, ``inopsio migrate`` it, create a tenant and its
   owner, and start ``inopsio serve --workers N``;
2. issues: each round writes 100 drafts, then sends 100 ``POST /api/v1/erp/invoices/{id}/issue`` at
   once; the issued numbers of all rounds must be exactly 1..rounds*100 (gapless, no duplicates);
3. webhooks: ``--webhooks`` correctly signed ``payment_intent.succeeded`` events, one after the other,
   each booking a payment on an open invoice; then each of 100 of them delivered again (replays,
   booked nothing); latency per request;
4. PDF: 50 ``GET .../pdf`` (Factur-X) of a 20-line invoice through the full stack;
5. write ``bench/results/erp-invoicing-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import stripe

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from run import (  # noqa: E402  (a sibling module; bench/ is not a package)
    DOC,
    RESULTS_DIR,
    ROOT,
    Server,
    app_env,
    bin_path,
    forget_redis_namespace,
    free_port,
    log,
    with_database,
    write_doc_section,
)

DB_NAME = "inopsio_bench_erp"
NAMESPACE = "bench-erp"
START_MARK = "<!-- bench:erp-invoicing:start -->"
END_MARK = "<!-- bench:erp-invoicing:end -->"
WEBHOOK_SECRET = "whsec_bench_" + "b" * 24
TARGET_WEBHOOK_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": statistics.median(values),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
    }


async def create_owner(owner_url: str, redis_url: str) -> tuple[str, str, str]:
    """A tenant with unlimited request quotas and its owner: (slug, tenant id, password)."""
    from inopsio.app import create_app
    from inopsio.settings import load_settings
    from inopsio.tenancy.schemas import TenantCreate

    settings = load_settings({}, database_url=owner_url, redis_url=redis_url, redis_namespace=NAMESPACE)
    app = create_app(settings)
    kernel = app.state.kernel
    async with app.lifespan():
        tenant = await kernel.tenants.create(TenantCreate(slug="erp-bench", name="ERP bench"))
        await kernel.tenants.set_quotas(tenant.id, {"api_calls_per_minute": None, "requests_per_minute_per_user": None})
        password = "bench passphrase " + secrets.token_hex(8)
        await kernel.identity.accounts.create_member(tenant, "owner@bench.example", password, "owner", verified=True)
    return tenant.slug, str(tenant.id), password


def signed(event: dict[str, Any]) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload.decode()}", WEBHOOK_SECRET)
    return payload, f"t={timestamp},v1={signature}"


async def run(base: str, slug: str, tenant_id: str, password: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": "owner@bench.example", "password": password},
            headers={"X-Tenant": slug},
        )
        login.raise_for_status()
        headers = {"X-Tenant": slug, "Authorization": f"Bearer {login.json()['access_token']}"}

        async def call(method: str, path: str, **kwargs: Any) -> Any:
            response = await client.request(method, f"/api/v1/erp{path}", headers=headers, **kwargs)
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json() if "json" in response.headers.get("content-type", "") else response.content

        await call(
            "PATCH", "/settings", json={"stripe_secret_key": "sk_test_bench", "stripe_webhook_secret": WEBHOOK_SECRET}
        )
        vat = await call("POST", "/tax-rates", json={"name": "VAT 20%", "rate": "20"})
        customer = await call("POST", "/customers", json={"name": "Bench Customer", "currency": "EUR", "country": "DE"})
        line = {"description": "Consulting", "quantity": "2", "unit_price": "100", "tax_rate_ids": [vat["id"]]}

        # -- concurrent issues --------------------------------------------------------------
        numbers: list[str] = []
        issue_latencies: list[float] = []
        round_seconds: list[float] = []
        semaphore = asyncio.Semaphore(20)
        for round_no in range(args.rounds):

            async def draft() -> str:
                async with semaphore:
                    body = {"customer_id": customer["id"], "lines": [line]}
                    return str((await call("POST", "/invoices", json=body))["id"])

            drafts = await asyncio.gather(*(draft() for _ in range(100)))

            async def issue(invoice_id: str) -> str:
                t0 = time.perf_counter()
                number = (await call("POST", f"/invoices/{invoice_id}/issue"))["number"]
                issue_latencies.append((time.perf_counter() - t0) * 1000)
                return str(number)

            t0 = time.perf_counter()
            numbers += await asyncio.gather(*(issue(i) for i in drafts))
            round_seconds.append(time.perf_counter() - t0)
            log(f"round {round_no + 1}: 100 concurrent issues in {round_seconds[-1]:.2f} s")
        values = sorted(int(re.sub(r"\D", "", n.rsplit("-", 1)[1])) for n in numbers)
        gapless = values == list(range(1, args.rounds * 100 + 1))
        if not gapless:
            raise RuntimeError(f"numbering is not gapless: {values[:10]}...")

        # -- webhooks -----------------------------------------------------------------------
        invoices = await call("GET", "/invoices", params={"status": "issued", "limit": 200})
        targets = [i["id"] for i in invoices]
        webhook_latencies: list[float] = []
        replay_latencies: list[float] = []
        events = []
        for n in range(args.webhooks):
            invoice_id = targets[n % len(targets)]
            events.append(
                {
                    "id": "evt_" + secrets.token_hex(12),
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "created": int(time.time()),
                    "data": {
                        "object": {
                            "id": "pi_" + secrets.token_hex(12),
                            "object": "payment_intent",
                            "amount": 1,
                            "amount_received": 1,
                            "currency": "eur",
                            "metadata": {"inopsio_tenant_id": tenant_id, "inopsio_invoice_id": invoice_id},
                        }
                    },
                }
            )

        async def deliver(event: dict[str, Any], into: list[float], expect: str) -> None:
            payload, signature = signed(event)
            t0 = time.perf_counter()
            response = await client.post(
                "/api/v1/erp/stripe/webhook",
                content=payload,
                headers={"X-Tenant": slug, "Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            into.append((time.perf_counter() - t0) * 1000)
            outcome = response.json().get("outcome", "")
            if response.status_code != 200 or not outcome.startswith(expect):
                raise RuntimeError(f"webhook: {response.status_code} {response.text}")

        for event in events:
            await deliver(event, webhook_latencies, "booked")
        for event in events[:100]:
            await deliver(event, replay_latencies, "duplicate")
        payments = await call("GET", "/payments", params={"limit": 200})
        log(f"{len(events)} webhooks booked; last payments listed: {len(payments)}")

        # -- PDF through the stack -------------------------------------------------------------
        lines20 = [{**line, "description": f"Work package {i + 1}: analysis and implementation"} for i in range(20)]
        big = await call("POST", "/invoices", json={"customer_id": customer["id"], "lines": lines20})
        await call("POST", f"/invoices/{big['id']}/issue")
        pdf_latencies: list[float] = []
        await call("GET", f"/invoices/{big['id']}/pdf")
        for _ in range(50):
            t0 = time.perf_counter()
            await call("GET", f"/invoices/{big['id']}/pdf")
            pdf_latencies.append((time.perf_counter() - t0) * 1000)

    total_issues = args.rounds * 100
    return {
        "issues": {
            "total": total_issues,
            "gapless": gapless,
            "per_second": total_issues / sum(round_seconds),
            "round_seconds": round_seconds,
            "latency": stats(issue_latencies),
        },
        "webhooks": {"booked": stats(webhook_latencies), "replayed": stats(replay_latencies)},
        "pdf": stats(pdf_latencies),
    }


def render_section(doc: dict[str, Any]) -> str:
    r = doc["results"]
    issues, booked, replayed, pdf = r["issues"], r["webhooks"]["booked"], r["webhooks"]["replayed"], r["pdf"]
    verdict = "meets" if booked["p99_ms"] <= TARGET_WEBHOOK_P99_MS else "misses"

    def row(name: str, s: dict[str, float]) -> str:
        return (
            f"| {name} | {s['count']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | **{s['p99_ms']:.1f}** | "
            f"{s['max_ms']:.1f} |"
        )

    return f"""{START_MARK}
## ERP: concurrent invoice issues, Stripe webhooks, PDF through the stack

Issue 7's invoicing benchmark (`bench/erp_invoicing.py`) against `inopsio serve --workers
{doc["settings"]["workers"]}` over HTTP (httpx from the same machine). Issues: each round writes 100 drafts, then
sends their 100 issue requests at once; every issue takes the tenant's number counter row with
`SELECT ... FOR UPDATE` in its transaction, so they queue on it. Webhooks: correctly signed
`payment_intent.succeeded` events one after the other, each verified (`stripe.Webhook.construct_event`),
recorded by event id and booked as a payment; then 100 of them delivered again.

Run of {doc["started_at"]} (`bench/results/{doc["file"]}`): `{doc["command"]}`

- Machine: {doc["machine"]}. Script, server, PostgreSQL and Redis share it.
- Issues: {issues["total"]} in {len(issues["round_seconds"])} rounds of 100 concurrent requests,
  **{issues["per_second"]:.0f} issues/s**; numbers 1..{issues["total"]} with no gap and no duplicate:
  **{"yes" if issues["gapless"] else "NO"}**.
- Webhook p99 target ≤ {TARGET_WEBHOOK_P99_MS:.0f} ms: {booked["p99_ms"]:.1f} ms, so it {verdict} the target.

| requests | count | p50 ms | p95 ms | **p99 ms** | max ms |
|---|---:|---:|---:|---:|---:|
{row("issue (100 at once)", issues["latency"])}
{row("webhook, booked", booked)}
{row("webhook, replayed (booked nothing)", replayed)}
{row("GET pdf (Factur-X, 20 lines)", pdf)}
{END_MARK}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = with_database(base_url, DB_NAME)
    RESULTS_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS_DIR / f"erp-invoicing-{stamp}"
    work.mkdir()
    server = None
    try:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        env = app_env(owner_url, redis_url, INOPSIO_REDIS_NAMESPACE=NAMESPACE)
        subprocess.run([bin_path("inopsio"), "migrate"], env=env, check=True, cwd=ROOT)
        slug, tenant_id, password = asyncio.run(create_owner(owner_url, redis_url))
        port = free_port()
        argv = [bin_path("inopsio"), "serve", "--port", str(port), "--workers", str(args.workers)]
        server = Server("web", argv, env, work / "web.log")
        server.wait_ready(f"http://127.0.0.1:{port}/health/live", {200})
        results = asyncio.run(run(f"http://127.0.0.1:{port}", slug, tenant_id, password, args))
        doc = {
            "benchmark": "erp-invoicing",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"erp-invoicing-{stamp}.json",
            "command": ".venv/bin/python bench/erp_invoicing.py "
            + " ".join(a for a in sys.argv[1:] if a != "--no-doc"),
            "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}",
            "settings": {k: v for k, v in vars(args).items() if k != "no_doc"},
            "results": results,
        }
        (RESULTS_DIR / doc["file"]).write_text(json.dumps(doc, indent=2))
        log(json.dumps(results, indent=1)[:1500])
        if not args.no_doc:
            write_doc_section(render_section(doc), START_MARK, END_MARK)
            log(f"wrote {DOC.relative_to(ROOT)}")
    finally:
        if server is not None:
            server.stop()
        forget_redis_namespace(redis_url, NAMESPACE)
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
