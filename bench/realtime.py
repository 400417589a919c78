"""The real-time benchmark (issue 4): event published through web process 1, received on process 2.

``.venv/bin/python bench/realtime.py [--events 10000] [--posters 4]``. Needs PostgreSQL and Redis
(``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``; defaults: the local servers). Steps:

1. create a fresh database ``inopsio_bench_rt``, ``inopsio migrate`` it, create two tenants and
   their owners through the kernel's own services;
2. start two separate ``inopsio serve`` processes (one uvicorn worker each, same database and Redis);
3. connect one WebSocket client to process 2 subscribed to ``sample.note.*``, then create notes by
   HTTP POST on process 1 from ``--posters`` concurrent posters until ``--events`` are posted, and time each
   event from its ``occurred_at`` (set in the publishing transaction) and from the start of its
   POST, to its arrival on the socket;
4. again with ``--idle`` (1,000) more connections held open on process 2 (another tenant's, subscribed to ``*``);
5. write ``bench/results/realtime-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from websockets.asyncio.client import ClientConnection, connect

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

DB_NAME = "inopsio_bench_rt"
NAMESPACE = "bench-rt"
START_MARK = "<!-- bench:realtime:start -->"
END_MARK = "<!-- bench:realtime:end -->"
TARGET_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def create_tenants(owner_url: str, redis_url: str) -> list[tuple[str, str, str]]:
    """Two tenants with an owner each, made by the kernel's services; (slug, email, password)."""
    from inopsio.app import create_app
    from inopsio.settings import load_settings
    from inopsio.tenancy.schemas import TenantCreate

    settings = load_settings(
        {}, database_url=owner_url, redis_url=redis_url, redis_namespace=NAMESPACE, dispatch_events=False
    )
    app = create_app(settings)
    kernel = app.state.kernel
    made = []
    async with app.lifespan():
        for name in ("live", "idle"):
            slug = f"rt-{name}-{secrets.token_hex(3)}"
            tenant = await kernel.tenants.create(TenantCreate(slug=slug, name=f"Realtime {name}"))
            email, password = f"owner@{slug}.example.com", "bench " + secrets.token_urlsafe(12)
            await kernel.identity.accounts.create_member(tenant, email, password, "owner", verified=True)
            made.append((slug, email, password))
    return made


def sign_in(base: str, slug: str, email: str, password: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Tenant": slug}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def open_socket(ws_base: str, slug: str, token: str, topic: str) -> ClientConnection:
    ws = await connect(
        f"{ws_base}/api/v1/ws", additional_headers={"X-Tenant": slug, "Authorization": f"Bearer {token}"}
    )
    await ws.send(json.dumps({"op": "subscribe", "topics": [topic]}))
    reply = json.loads(await ws.recv())
    if reply["op"] != "subscribed":
        raise RuntimeError(f"subscription refused: {reply}")
    return ws


async def measure(
    base1: str, ws2: str, slug: str, token: str, duration: float, posters: int, events: int | None = None
) -> dict[str, Any]:
    """Post ``events`` notes on process 1 (at most for ``duration`` seconds); time their events on process 2."""
    ws = await open_socket(ws2, slug, token, "sample.note.*")
    started: dict[str, float] = {}
    from_commit: list[float] = []
    from_post: list[float] = []
    received: set[str] = set()
    headers = {"X-Tenant": slug, "Authorization": f"Bearer {token}"}
    began = time.monotonic()
    stop_at = began + duration
    errors = 0
    to_post = events if events is not None else 1 << 62

    async def reader() -> None:
        while True:
            message = json.loads(await ws.recv())
            now_wall, now = time.time(), time.monotonic()
            if message.get("op") != "event":
                continue
            note_id = message["event"]["data"]["note_id"]
            if note_id in received:
                continue
            received.add(note_id)
            occurred = dt.datetime.fromisoformat(message["event"]["occurred_at"]).timestamp()
            from_commit.append((now_wall - occurred) * 1000)
            if note_id in started:
                from_post.append((now - started[note_id]) * 1000)

    async def poster(client: httpx.AsyncClient) -> None:
        nonlocal errors, to_post
        while time.monotonic() < stop_at and to_post > 0:
            to_post -= 1
            t0 = time.monotonic()
            response = await client.post("/api/v1/sample/notes", json={"title": "rt"}, headers=headers)
            if response.status_code != 201:
                errors += 1
                to_post += 1
                continue
            started[response.json()["id"]] = t0

    reading = asyncio.create_task(reader())
    async with httpx.AsyncClient(base_url=base1, timeout=30) as client:
        await asyncio.gather(*(poster(client) for _ in range(posters)))
    posting = time.monotonic() - began
    # Let the last events arrive.
    deadline = time.monotonic() + 10
    while len(received) < len(started) and time.monotonic() < deadline:  # noqa: ASYNC110  (a bounded poll)
        await asyncio.sleep(0.1)
    reading.cancel()
    await ws.close()
    return {
        "posted": len(started),
        "received": len(received),
        "missing": len(set(started) - received),
        "post_errors": errors,
        "events_per_second": len(started) / posting,
        "from_commit_ms": summary(from_commit),
        "from_post_ms": summary(from_post),
    }


def fmt(result: dict[str, Any]) -> str:
    return f"{result['from_commit_ms']['p50']:.1f} / {result['from_commit_ms']['p99']:.1f}"


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


async def run_phases(args: argparse.Namespace, base1: str, base2: str, tenants: list[tuple[str, str, str]]) -> Any:
    live, idle = tenants
    live_token = sign_in(base1, *live)
    idle_token = sign_in(base2, *idle)
    ws2 = base2.replace("http://", "ws://")
    log("warming up")
    await measure(base1, ws2, live[0], live_token, 5, args.posters)
    args.events = args.events or None
    log(f"phase 1: one socket on process 2, {args.events or 'as many'} events (at most {args.duration} s)")
    quiet = await measure(base1, ws2, live[0], live_token, args.duration, args.posters, args.events)
    log(f"  {quiet['posted']} events, from commit p50 / p99 {fmt(quiet)} ms")
    log(f"phase 2: opening {args.idle} idle sockets on process 2")
    idle_sockets: list[ClientConnection] = []
    for start in range(0, args.idle, 50):
        batch = [open_socket(ws2, idle[0], idle_token, "*") for _ in range(min(50, args.idle - start))]
        idle_sockets += await asyncio.gather(*batch)
    held = len(idle_sockets)
    log(f"  {held} idle sockets open; measuring again")
    busy = await measure(base1, ws2, live[0], live_token, args.duration, args.posters, args.events)
    still_open = sum(1 for s in idle_sockets if s.state.name == "OPEN")
    log(f"  {busy['posted']} events, from commit p50 / p99 {fmt(busy)} ms")
    await asyncio.gather(*(s.close() for s in idle_sockets))
    return {"one_socket": quiet, "with_idle": {**busy, "idle_sockets": held, "idle_still_open": still_open}}


def render(doc: dict[str, Any]) -> str:
    def row(name: str, r: dict[str, Any]) -> str:
        c, p = r["from_commit_ms"], r["from_post_ms"]
        return (
            f"| {name} | {r['posted']:,} | {r['events_per_second']:.0f} | {c['p50']:.1f} | {c['p90']:.1f} | "
            f"**{c['p99']:.1f}** | {p['p50']:.1f} | {p['p99']:.1f} | {r['missing']} |"
        )

    one, idle = doc["results"]["one_socket"], doc["results"]["with_idle"]
    cfg = doc["settings"]
    verdict = ["PASS" if r["from_commit_ms"]["p99"] <= TARGET_P99_MS else "**FAIL**" for r in (one, idle)]
    return f"""{START_MARK}
## Real time: event through web process 1, received by a WebSocket on web process 2

Issue 4's benchmark (`bench/realtime.py`). Two separate `inopsio serve` processes (one uvicorn worker
each, same PostgreSQL and Redis). {cfg["posters"]} concurrent clients create notes by `POST /api/v1/sample/notes`
on process 1; the note's `sample.note.created` event is written to the outbox in that transaction,
dispatched (LISTEN/NOTIFY wake-up; whichever process's dispatcher claims it), published on the
tenant's Redis channel, and pushed by process 2's hub to a WebSocket client subscribed to
`sample.note.*`. "From commit" is socket arrival minus the event's `occurred_at` (stamped in the
publishing transaction, same clock); "from POST" also includes the HTTP request itself.

Run of {doc["started_at"]} (`bench/results/{doc["file"]}`): `{doc["command"]}`

- Machine: {doc["machine"]}. Client, both servers, PostgreSQL and Redis share it.
- Each phase posts {cfg["events"] or "as many events as fit in " + str(cfg["duration"]) + " s"} events \
(after 5 s of warm-up), as fast as the {cfg["posters"]} posters get answers.

| phase | events | events/s | p50 ms (from commit) | p90 | p99 | p50 ms (from POST) | p99 | missing |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{row("1 socket on process 2", one)}
{row(f"+ {idle['idle_sockets']:,} idle sockets held on process 2", idle)}

- p99 from commit, target ≤ {TARGET_P99_MS:.0f} ms: {verdict[0]} with one socket, {verdict[1]} with
  {idle["idle_sockets"]:,} idle connections held ({idle["idle_still_open"]:,} still open at the end).
{doc.get("notes", "").strip()}
- The idle sockets belong to another tenant and follow `*`: they cost their process one Redis
  subscription (one per tenant per process, not per socket) and memory, no per-event work.
{END_MARK}"""


def write_doc(section: str) -> None:
    write_doc_section(section, START_MARK, END_MARK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per phase (0: as many as --duration allows)")
    parser.add_argument("--duration", type=float, default=600.0, help="at most this many seconds per phase")
    parser.add_argument("--posters", type=int, default=4, help="concurrent HTTP clients creating notes")
    parser.add_argument("--notes", default="", help="a paragraph (Markdown list items) added to the docs section")
    parser.add_argument("--idle", type=int, default=1000, help="idle WebSocket connections in phase 2")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    limit = raise_open_files(args.idle * 2 + 1024)
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = with_database(base_url, DB_NAME)
    RESULTS_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS_DIR / f"realtime-{stamp}"
    work.mkdir()
    servers: list[Server] = []
    try:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        # Both processes must verify the tokens either one issues: one secret for the pair.
        env = app_env(
            owner_url,
            redis_url,
            INOPSIO_REDIS_NAMESPACE=NAMESPACE,
            INOPSIO_SECRET_KEY=secrets.token_urlsafe(32),
            # Counted but unlimited: the posters would hit the per-user limit in a second.
            INOPSIO_QUOTAS__REQUESTS_PER_MINUTE_PER_USER="",
        )
        subprocess_run([bin_path("inopsio"), "migrate"], env)
        tenants = asyncio.run(create_tenants(owner_url, redis_url))
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports, 1):
            server = Server(f"web {i}", [bin_path("inopsio"), "serve", "--port", str(port)], env, work / f"web{i}.log")
            servers.append(server)
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for server, base in zip(servers, bases, strict=True):
            server.wait_ready(f"{base}/health/live", {200})
        results = asyncio.run(run_phases(args, bases[0], bases[1], tenants))
        import platform

        doc = {
            "benchmark": "realtime",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"realtime-{stamp}.json",
            "command": ".venv/bin/python bench/realtime.py " + " ".join(sys.argv[1:]),
            "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}, "
            f"open-file limit {limit}",
            "settings": {"events": args.events, "duration": args.duration, "posters": args.posters, "idle": args.idle},
            "results": results,
            "notes": args.notes,
        }
        (RESULTS_DIR / doc["file"]).write_text(json.dumps(doc, indent=2))
        if not args.no_doc:
            write_doc(render(doc))
            log(f"wrote {DOC.relative_to(ROOT)}")
    finally:
        for server in servers:
            server.stop()
        forget_redis_namespace(redis_url, NAMESPACE)
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def subprocess_run(argv: list[str], env: dict[str, str]) -> None:
    import subprocess

    subprocess.run(argv, env=env, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
