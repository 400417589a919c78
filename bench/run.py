"""The kernel-read benchmark (issue 2): one tenant-scoped row through the full stack vs. raw psycopg.

``nox -s bench`` or ``.venv/bin/python bench/run.py``. Needs PostgreSQL and Redis (``BENCH_DATABASE_URL``,
``BENCH_REDIS_URL``; defaults: the local servers) and ``wrk`` on the PATH. Steps:

1. create a fresh database ``inopsio_bench``, ``inopsio migrate`` it, seed 500 tenants and 200,000
   ``sample_notes`` rows spread over them (COPY as the owner);
2. start the full stack (``inopsio serve --workers 2``) and the bare app (``bench/bare_app.py``
   under uvicorn, 2 workers), warm both up, then run wrk against them alternately
   (bare, full, bare, full, ...) with the same settings, each request a random (tenant, note) pair;
3. count round trips of one full-stack GET with counting proxies in front of PostgreSQL and Redis
   (``bench/roundtrips.py``), and transactions per request from ``pg_stat_database`` during the runs;
4. write ``bench/results/kernel-read-<time>.json`` and rewrite this benchmark's section of
   ``docs/benchmarks.md``; stop the servers, drop the database, delete the Redis keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import psycopg
import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DOC = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- bench:kernel-read:start -->"
END_MARK = "<!-- bench:kernel-read:end -->"
DB_NAME = "inopsio_bench"
REDIS_NAMESPACE = "bench"
TARGET_RATIO = 0.45
#: The sample plugin's unauthenticated read (route opt ``public``): issue 2's full stack is tenant
#: resolution, RLS transaction and msgspec response; bearer tokens and Casbin come with identity.
FULL_PATH = "/api/v1/sample/public-notes/"
TARGET_P99_MS = 50.0
DOC_HEADER = "# Benchmarks\n\nHow fast Inopsio is, measured. Each section is written by a script under `bench/`.\n"

sys.path.insert(0, str(BENCH_DIR))
from roundtrips import CountingProxy  # noqa: E402  (a sibling module; bench/ is not a package)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    """A console script of the running interpreter's environment (the venv nox or the user made)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# -- machine ------------------------------------------------------------------------------------


def machine(owner_url: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    with psycopg.connect(owner_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    r = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis_version = r.info("server")["redis_version"]
    r.close()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_shared_buffers": shared_buffers,
        "redis": redis_version,
        "wrk": " ".join(wrk_version[0].split()[:2]) if wrk_version else "wrk",
    }


# -- database -----------------------------------------------------------------------------------


def create_database(admin_url: str, name: str = DB_NAME) -> None:
    """A fresh, empty benchmark database (dropped first if a previous run left it)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str = DB_NAME) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(owner_url: str, tenants: int, rows: int) -> None:
    """Tenants as the tenant service would store them (default settings, no quota overrides), then notes.

    Inserted directly as the owner for speed: plugins' ``on_tenant_created`` seeding is not part of
    what this benchmark reads.
    """
    from inopsio.db.base import new_id
    from inopsio.tenancy.schemas import TenantSettings

    settings = json.dumps(msgspec.to_builtins(TenantSettings()))
    tenant_ids = [new_id() for _ in range(tenants)]
    rng = random.Random(2)
    with psycopg.connect(owner_url) as conn:
        with conn.cursor().copy("COPY tenants (id, slug, name, status, settings, quotas) FROM STDIN") as copy:
            for i, tenant_id in enumerate(tenant_ids):
                copy.write_row((tenant_id, f"tenant-{i:04d}", f"Tenant {i}", "active", settings, "{}"))
        with conn.cursor().copy("COPY sample_notes (tenant_id, id, title, body) FROM STDIN") as copy:
            for i in range(rows):
                title = f"Note {i} " + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=30))
                body = " ".join(rng.choices(("lorem", "ipsum", "dolor", "sit", "amet", "tenant", "row"), k=40))
                copy.write_row((tenant_ids[i % tenants], new_id(), title, body))
        conn.commit()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tenants")
        conn.execute("VACUUM ANALYZE sample_notes")


def pick_pairs(owner_url: str, count: int) -> list[tuple[str, str, str]]:
    with psycopg.connect(owner_url) as conn:
        conn.execute("SELECT setseed(0.42)")
        rows = conn.execute(
            "SELECT t.slug, t.id::text, n.id::text FROM sample_notes n JOIN tenants t ON t.id = n.tenant_id "
            "ORDER BY random() LIMIT %s",
            (count,),
        ).fetchall()
    return [(slug, tid, nid) for slug, tid, nid in rows]


def write_pairs_lua(pairs: list[tuple[str, str, str]], path: Path) -> None:
    def array(values: list[str]) -> str:
        return "{" + ",".join(f'"{v}"' for v in values) + "}"

    slugs, tids, nids = (list(column) for column in zip(*pairs, strict=True))
    path.write_text(f"return {{slugs={array(slugs)},\ntenant_ids={array(tids)},\nnote_ids={array(nids)}}}\n")


def xact_commits(owner_url: str) -> int:
    """Committed transactions in the bench database, once every backend has flushed its counters.

    PostgreSQL 15 backends report statistics when idle, up to ~10 s late; poll until the figure
    holds still so each wrk run's delta is its own.
    """
    last, stable = -1, 0
    deadline = time.monotonic() + 15
    with psycopg.connect(owner_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DB_NAME,)).fetchone()
            value = int(row[0]) if row else 0
            stable = stable + 1 if value == last else 0
            if stable >= 2:
                break
            last = value
            time.sleep(1)
    return last


# -- servers ------------------------------------------------------------------------------------


class Server:
    """A server process we started; stopped by its own process group id (uvicorn's workers included)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_file = log_path.open("w")
        self.process = subprocess.Popen(
            argv, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )

    def wait_ready(self, url: str, ok: set[int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_file.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code in ok:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_file.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by every live process of a process group (a server and its
    workers): the server's own cost, whatever else the machine is doing."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def app_env(owner_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INOPSIO_")}
    env.update(
        INOPSIO_DATABASE_URL=owner_url,
        INOPSIO_REDIS_URL=redis_url,
        INOPSIO_REDIS_NAMESPACE=REDIS_NAMESPACE,
        # Unlimited: the quota is still counted in Redis on every request, it just never refuses.
        INOPSIO_QUOTAS__API_CALLS_PER_MINUTE="",
        INOPSIO_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# -- wrk ----------------------------------------------------------------------------------------


def run_wrk(url: str, mode: str, pairs: Path, args: argparse.Namespace, duration: int) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(BENCH_DIR / "random_notes.lua"),
        url,
        "--",
        mode,
        str(pairs),
    ]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk failed against {url} ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    out = done.stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_JSON "))
    result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["non_2xx_or_errors"] = sum(result["errors"].values())
    return result


# -- round trips --------------------------------------------------------------------------------


@contextlib.contextmanager
def proxies(pg_host: str, pg_port: int, redis_host: str, redis_port: int) -> Iterator[tuple[CountingProxy, ...]]:
    """Both counting proxies on an event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    pg = CountingProxy("postgres", pg_host, pg_port)
    rd = CountingProxy("redis", redis_host, redis_port)
    asyncio.run_coroutine_threadsafe(pg.start(), loop).result()
    asyncio.run_coroutine_threadsafe(rd.start(), loop).result()
    try:
        yield pg, rd
    finally:
        asyncio.run_coroutine_threadsafe(pg.stop(), loop).result()
        asyncio.run_coroutine_threadsafe(rd.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def count_round_trips(owner_url: str, redis_url: str, pairs: list[tuple[str, str, str]], logs: Path) -> dict[str, Any]:
    """Round trips of one full-stack GET, through counting proxies, one request at a time, 1 worker.

    Two cases: the tenant is in the process's tenant cache (the steady state for a busy tenant),
    and it is not (first request of a tenant, or after the cache entry expired).
    """
    pg = urlsplit(owner_url)
    rd = urlsplit(redis_url)
    with proxies(pg.hostname or "127.0.0.1", pg.port or 5432, rd.hostname or "127.0.0.1", rd.port or 6379) as (
        pg_proxy,
        rd_proxy,
    ):
        app_url = f"postgresql://inopsio_app@127.0.0.1:{pg_proxy.port}/{DB_NAME}?sslmode=disable"
        proxied_redis = urlunsplit(rd._replace(netloc=f"127.0.0.1:{rd_proxy.port}"))
        port = free_port()
        env = app_env(owner_url, proxied_redis, INOPSIO_DATABASE_APP_URL=app_url)
        server = Server(
            "full stack (proxied)", [bin_path("inopsio"), "serve", "--port", str(port)], env, logs / "full-proxied.log"
        )
        base = f"http://127.0.0.1:{port}"
        result: dict[str, Any] = {}
        try:
            server.wait_ready(f"{base}/health/live", {200})
            with httpx.Client(base_url=base, timeout=10) as client:

                def get(slug: str, note_id: str) -> None:
                    response = client.get(f"{FULL_PATH}{note_id}", headers={"X-Tenant": slug})
                    response.raise_for_status()

                def measure(sample: list[tuple[str, str, str]], warm: bool) -> dict[str, Any]:
                    pg_proxy.tally.reset()
                    rd_proxy.tally.reset()
                    pg_turns: list[int] = []
                    rd_turns: list[int] = []
                    seen: list[dict[str, list[str]]] = []
                    for slug, _, note_id in sample:
                        if warm:  # tenant in cache, statements prepared: uncounted request just before
                            get(slug, note_id)
                        before_pg, before_rd = pg_proxy.tally.turns, rd_proxy.tally.turns
                        pg_proxy.tally.statements.clear()
                        rd_proxy.tally.statements.clear()
                        pg_proxy.counting = rd_proxy.counting = True
                        get(slug, note_id)
                        pg_proxy.counting = rd_proxy.counting = False
                        pg_turns.append(pg_proxy.tally.turns - before_pg)
                        rd_turns.append(rd_proxy.tally.turns - before_rd)
                        seen.append(
                            {"postgres": list(pg_proxy.tally.statements), "redis": list(rd_proxy.tally.statements)}
                        )
                    # The kernel's background tasks (event dispatcher, usage flush, ...) share the pool and
                    # sometimes talk to PostgreSQL during a request: the median request is the request alone.
                    median_pg = statistics.median(pg_turns)
                    typical = next(i for i, turns in enumerate(pg_turns) if turns == round(median_pg))
                    return {
                        "requests": len(sample),
                        "postgres_round_trips_per_request": median_pg,
                        "postgres_round_trips_mean": statistics.mean(pg_turns),
                        "postgres_round_trips_max": max(pg_turns),
                        "redis_round_trips_per_request": statistics.median(rd_turns),
                        "redis_round_trips_mean": statistics.mean(rd_turns),
                        "postgres_messages": dict(pg_proxy.tally.messages),
                        "redis_commands": dict(rd_proxy.tally.messages),
                        "example_request": seen[typical],
                    }

                # Prepared statements need prepare_threshold (3) uses per pooled connection: warm all.
                for slug, _, note_id in pairs[:50]:
                    for _ in range(4):
                        get(slug, note_id)
                result["tenant_cached"] = measure(pairs[:50], warm=True)
                seen = {slug for slug, _, _ in pairs[:50]}
                fresh: list[tuple[str, str, str]] = []
                for pair in pairs[50:]:
                    if pair[0] not in seen and len(fresh) < 50:
                        fresh.append(pair)
                        seen.add(pair[0])
                result["tenant_not_cached"] = measure(fresh, warm=False)
        finally:
            server.stop()
    return result


# -- report -------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def agg(kind: str) -> dict[str, Any]:
        mine = [r for r in runs if r["target"] == kind]
        return {
            "rps": statistics.median(r["rps"] for r in mine),
            "p50_ms": statistics.median(r["latency_us"]["p50"] for r in mine) / 1000,
            "p90_ms": statistics.median(r["latency_us"]["p90"] for r in mine) / 1000,
            "p99_ms": statistics.median(r["latency_us"]["p99"] for r in mine) / 1000,
            "p99_worst_ms": max(r["latency_us"]["p99"] for r in mine) / 1000,
            "rps_runs": [round(r["rps"], 1) for r in mine],
            "errors": sum(r["non_2xx_or_errors"] for r in mine),
            "transactions_per_request": statistics.median(r["transactions_per_request"] for r in mine),
            "server_cpu_us": statistics.median(r.get("server_cpu_us_per_request", 0.0) for r in mine),
        }

    bare, full = agg("bare"), agg("full")
    ratio = full["rps"] / bare["rps"]
    rounds = sorted({r["round"] for r in runs})
    per_round = [
        next(r["rps"] for r in runs if r["round"] == n and r["target"] == "full")
        / next(r["rps"] for r in runs if r["round"] == n and r["target"] == "bare")
        for n in rounds
    ]
    return {
        "bare": bare,
        "full": full,
        "ratio": ratio,
        "ratio_per_round": per_round,
        "ratio_pass": ratio >= TARGET_RATIO,
        "p99_pass": full["p99_ms"] <= TARGET_P99_MS,
    }


def render(result: dict[str, Any]) -> str:
    s, m, cfg, rt = result["summary"], result["machine"], result["settings"], result["round_trips"]
    bare, full = s["bare"], s["full"]

    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{', '.join(f'{x:,.0f}' for x in r['rps_runs'])} | {r.get('server_cpu_us', 0):,.0f} | "
            f"{r['transactions_per_request']:.2f} | {r['errors']} |"
        )

    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**FAIL**"

    cached, cold = rt["tenant_cached"], rt["tenant_not_cached"]
    cpu_times = full.get("server_cpu_us", 0) / max(1.0, bare.get("server_cpu_us", 0))

    def trips(case: dict[str, Any]) -> str:
        pg, rd = case["postgres_round_trips_per_request"], case["redis_round_trips_per_request"]
        return f"{pg:.2f} | {rd:.2f}"

    example_pg = "\n".join(f"    {line}" for line in cached["example_request"]["postgres"])
    example_redis = ", ".join(cached["example_request"]["redis"])
    cold_pg = "\n".join(f"    {line}" for line in cold["example_request"]["postgres"])
    lookups = max(0.0, full["transactions_per_request"] - 1)
    loads = [x for r in result["runs"] for x in r.get("loadavg", [])]
    busy = bool(loads) and max(loads) > m["nproc"] + 1
    load_note = (
        f"1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f} on {m['nproc']} CPUs"
        + (" (other work was running: absolute figures are depressed)." if busy else ".")
        if loads
        else "Load average not recorded."
    )
    return f"""{START_MARK}
## Kernel read: one tenant-scoped row, full stack vs. raw psycopg

Issue 2's benchmark. `GET /api/v1/sample/public-notes/{{id}}` of the test plugin (`inopsio_sample`)
through the whole kernel (tenant resolution from `X-Tenant`, authentication middleware and route
rules, which admit this `public` route without a credential, the per-minute API quota counted (in
the process, sent to Redis in batches), the row read as `inopsio_app` under row-level security with
the kernel's one-round-trip reader (`db_reader`: the tenant setting and a SQLAlchemy Core select in
one message, both server-side prepared statements after a connection's first read of the shape),
msgspec response), against a bare
ASGI app (`bench/bare_app.py`: psycopg pool, one autocommit `SELECT ... WHERE tenant_id = %s AND
id = %s` as the owner, msgspec-encoded, no framework). Every request reads a random
(tenant, note) pair out of {cfg["pairs"]:,} sampled rows.

Run of {result["started_at"]} (`bench/results/{result["file"]}`):

```
{result["command"]}
```

- Machine: {m["nproc"]} CPUs ({m["cpu"]}), {m["ram_gib"]} GiB RAM, Linux {m["kernel"]}, Python {m["python"]},
  PostgreSQL {m["postgresql"]} (shared_buffers {m["postgresql_shared_buffers"]}), Redis {m["redis"]}, {m["wrk"]}.
  wrk, both servers, PostgreSQL and Redis all share these {m["nproc"]} CPUs.
- Data: {cfg["tenants"]} tenants, {cfg["rows"]:,} `sample_notes` rows spread evenly over them.
- Servers: 2 uvicorn workers each (uvloop, httptools), log level WARNING (no access log);
  {cfg.get("full_pool_size", 10)} connections per worker for the full stack (half of them for one-round-trip
  reads) and a pool of 10 for the bare app; full stack with default
  settings otherwise (tenant cache
  {cfg["tenant_cache_seconds"]} s, API quota counted but unlimited).
- Load: `wrk -t{cfg["threads"]} -c{cfg["connections"]} -d{cfg["duration"]}s`, after {cfg["warmup"]} s of warm-up each;
  {cfg["rounds"]} rounds of bare then full, alternating, so both see the same machine state.
  Figures are the median over the rounds. {load_note}

| endpoint | rps | p50 ms | p90 ms | p99 ms | rps per round | server CPU µs/request | transactions/request | errors |
|---|---:|---:|---:|---:|---|---:|---:|---:|
{row("bare (raw psycopg)", bare)}
{row("full stack", full)}

- Full stack / bare: **{s["ratio"] * 100:.1f} %** of the bare read's rps (target ≥ {TARGET_RATIO * 100:.0f} %):
  {verdict(s["ratio_pass"])}. Per round: {", ".join(f"{x * 100:.1f} %" for x in s.get("ratio_per_round", []))}.
- Server CPU per request (user + system time of the server's processes over each run, divided by its
  requests; less moved by other work on the machine than rps, though contention still raises it):
  bare {bare.get("server_cpu_us", 0):,.0f} µs, full stack {full.get("server_cpu_us", 0):,.0f} µs
  ({cpu_times:.1f} times as much).
- Full-stack p99: **{full["p99_ms"]:.1f} ms** (target ≤ {TARGET_P99_MS:.0f} ms): {verdict(s["p99_pass"])}.
- Transactions per request are `pg_stat_database.xact_commit` deltas over each run divided by wrk's
  request count. Bare: one autocommit statement. Full stack: the request's transaction plus
  ~{lookups:.2f} other transactions per request (tenant lookups on a cache miss, the dispatcher's
  polling; the tenant cache keeps an entry {cfg["tenant_cache_seconds"]} s).

### Round trips per request

Measured by `bench/roundtrips.py`: counting TCP proxies between one full-stack worker and
PostgreSQL / Redis, requests sent one at a time. A round trip is a turn of the conversation (the
client sends after it has heard back), so messages sent together count once. Figures are the median
request (the kernel's background tasks share the pool and now and then talk during a request);
the mean is in the JSON.

| case | PostgreSQL round trips | Redis round trips |
|---|---:|---:|
| tenant in the process's cache ({cached["requests"]} requests) | {trips(cached)} |
| tenant not cached ({cold["requests"]} requests) | {trips(cold)} |

Setting the tenant costs no round trip of its own: the setting and the select travel in one
simple-query message, which PostgreSQL runs as one implicit transaction (no `BEGIN`, no `COMMIT`);
both are `EXECUTE`s of statements the connection prepared before (`PREPARE` goes in the same message
the first time a connection reads a shape), so PostgreSQL neither parses nor plans them again.
The request count costs no Redis round trip (it is sent with the process's next batch). What one
typical cached request sent to PostgreSQL (`Q` simple query; `P`/`B` parse/bind of the extended
protocol, a prepared statement is only bound):

```
{example_pg}
```

and to Redis: {example_redis or "nothing"}. An uncached tenant adds its lookup first:

```
{cold_pg}
```
{END_MARK}"""


def shown_arguments(argv: list[str]) -> list[str]:
    """The command line without ``--notes`` and its text (the notes are in the section already)."""
    shown, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--notes="):
            skip = False
            continue
        if arg == "--notes":
            skip = True
            continue
        shown.append(arg)
    return shown


def write_doc_section(section: str, start_mark: str, end_mark: str) -> None:
    """Replace one benchmark's section between its markers (append it if missing); leave the rest alone.

    Every benchmark script writes its own section of docs/benchmarks.md through this.
    """
    text = DOC.read_text() if DOC.exists() else DOC_HEADER
    pattern = re.compile(re.escape(start_mark) + ".*?" + re.escape(end_mark), re.S)
    if not pattern.search(text):
        DOC.write_text(text.rstrip("\n") + "\n\n" + section + "\n")
        return
    DOC.write_text(pattern.sub(lambda _: section, text))


def write_doc(section: str) -> None:
    write_doc_section(section, START_MARK, END_MARK)


def forget_redis_namespace(redis_url: str, namespace: str) -> None:
    """Delete every key a benchmark's servers left under their Redis namespace."""
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=20_000, help="random (tenant, note) pairs wrk picks from")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of wrk warm-up per server")
    parser.add_argument("--rounds", type=int, default=3, help="bare+full rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--full-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the full stack, to try a setting (e.g. INOPSIO_TENANT_CACHE_SECONDS=60)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = with_database(base_url, DB_NAME)
    RESULTS_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS_DIR / f"kernel-read-{stamp}"
    work.mkdir()
    servers: list[Server] = []
    try:
        log(f"creating {DB_NAME}, migrating")
        create_database(base_url)
        env = app_env(owner_url, redis_url, **dict(item.split("=", 1) for item in args.full_env))
        subprocess.run([bin_path("inopsio"), "migrate"], env=env, check=True, cwd=ROOT)
        log(f"seeding {args.tenants} tenants, {args.rows:,} notes")
        t0 = time.monotonic()
        seed(owner_url, args.tenants, args.rows)
        log(f"seeded in {time.monotonic() - t0:.1f} s")
        pairs = pick_pairs(owner_url, args.pairs)
        pairs_lua = work / "pairs.lua"
        write_pairs_lua(pairs, pairs_lua)

        full_port, bare_port = free_port(), free_port()
        full = Server(
            "full stack",
            [bin_path("inopsio"), "serve", "--port", str(full_port), "--workers", "2"],
            env,
            work / "full.log",
        )
        servers.append(full)
        bare_env = {**os.environ, "BENCH_DATABASE_URL": owner_url, "PYTHONUNBUFFERED": "1"}
        bare_argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "bare_app:app"]
        bare_argv += ["--port", str(bare_port), "--workers", "2", "--log-level", "warning", "--no-access-log"]
        bare = Server("bare", bare_argv, bare_env, work / "bare.log")
        servers.append(bare)
        full_url, bare_url = f"http://127.0.0.1:{full_port}", f"http://127.0.0.1:{bare_port}"
        full.wait_ready(f"{full_url}/health/ready", {200})
        bare.wait_ready(f"{bare_url}/", {404})

        # Same row, same answer from both, before measuring anything.
        slug, tenant_id, note_id = pairs[0]
        a = httpx.get(f"{full_url}{FULL_PATH}{note_id}", headers={"X-Tenant": slug})
        b = httpx.get(f"{bare_url}/notes/{tenant_id}/{note_id}")
        assert a.status_code == b.status_code == 200, (a.status_code, a.text, b.status_code, b.text)
        assert a.json() == b.json(), (a.json(), b.json())

        log("warming up")
        run_wrk(bare_url, "bare", pairs_lua, args, args.warmup)
        run_wrk(full_url, "full", pairs_lua, args, args.warmup)
        runs: list[dict[str, Any]] = []
        pgids = {"bare": bare.process.pid, "full": full.process.pid}
        for round_number in range(1, args.rounds + 1):
            for target, url in (("bare", bare_url), ("full", full_url)):
                before = xact_commits(owner_url)
                load_before = os.getloadavg()[0]
                cpu_before = group_cpu_seconds(pgids[target])
                result = run_wrk(url, target, pairs_lua, args, args.duration)
                result["server_cpu_us_per_request"] = (
                    (group_cpu_seconds(pgids[target]) - cpu_before) * 1e6 / max(1, result["requests"])
                )
                after = xact_commits(owner_url)
                # Other work on the machine distorts both sides: record the 1-minute load average.
                result.update(target=target, round=round_number, loadavg=[load_before, os.getloadavg()[0]])
                # Minus the polling's own two-or-so statements per xact_commits() call: negligible.
                result["transactions_per_request"] = (after - before) / result["requests"]
                lat = result["latency_us"]
                log(
                    f"round {round_number} {target}: {result['rps']:,.0f} rps, p50 {lat['p50'] / 1000:.1f} ms, "
                    f"p99 {lat['p99'] / 1000:.1f} ms, errors {result['non_2xx_or_errors']}, "
                    f"{result['transactions_per_request']:.2f} xact/req, "
                    f"server CPU {result['server_cpu_us_per_request']:.0f} us/req"
                )
                runs.append(result)
        for server in servers:
            server.stop()
        servers.clear()

        log("counting round trips")
        round_trips = count_round_trips(owner_url, redis_url, pairs, work)
        cached, cold = round_trips["tenant_cached"], round_trips["tenant_not_cached"]
        log(
            f"round trips per request: postgres {cached['postgres_round_trips_per_request']:.2f} cached / "
            f"{cold['postgres_round_trips_per_request']:.2f} uncached tenant, "
            f"redis {cached['redis_round_trips_per_request']:.2f}"
        )

        from inopsio.settings import Settings

        command = ".venv/bin/python bench/run.py" if len(sys.argv) == 1 else shlex.join(["bench/run.py", *sys.argv[1:]])
        result_doc: dict[str, Any] = {
            "benchmark": "kernel-read",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"kernel-read-{stamp}.json",
            "command": command + "   # or: nox -s bench",
            "machine": machine(owner_url),
            "settings": {
                "tenants": args.tenants,
                "rows": args.rows,
                "pairs": len(pairs),
                "duration": args.duration,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "threads": args.threads,
                "connections": args.connections,
                "server_workers": 2,
                "tenant_cache_seconds": float(env.get("INOPSIO_TENANT_CACHE_SECONDS", Settings().tenant_cache_seconds)),
                "full_pool_size": int(env.get("INOPSIO_DATABASE_POOL_SIZE", Settings().database_pool_size)),
                "full_env": args.full_env,
            },
            "runs": runs,
            "round_trips": round_trips,
        }
        result_doc["summary"] = summarise(runs)
        (RESULTS_DIR / result_doc["file"]).write_text(json.dumps(result_doc, indent=2, default=str))
        s = result_doc["summary"]
        log(
            f"bare {s['bare']['rps']:,.0f} rps p99 {s['bare']['p99_ms']:.1f} ms | full {s['full']['rps']:,.0f} rps "
            f"p99 {s['full']['p99_ms']:.1f} ms | ratio {s['ratio'] * 100:.1f} %"
        )
        if not args.no_doc:
            write_doc(render(result_doc))
            log(f"wrote {DOC.relative_to(ROOT)}")
    finally:
        for server in servers:
            server.stop()
        forget_redis_namespace(redis_url, REDIS_NAMESPACE)
        if not args.keep:
            drop_database(base_url)


if __name__ == "__main__":
    main()
