"""The real-time benchmark (issue 4): event published through web process 1, received on process 2.

``.venv/bin/python bench/realtime.py [--events 10000] [--rate 50 --rate 100] [--posters 4]``. Needs
PostgreSQL and Redis (``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``; defaults: the local servers). Steps:

1. create a fresh database ``inopsio_bench_rt``, ``inopsio migrate`` it, create two tenants and
   their owners through the kernel's own services;
2. start two separate ``inopsio serve`` processes (one uvicorn worker each, same database and Redis);
3. for each phase, a receiver process of its own (its own event loop, so the load generator never
   delays its clock) connects one WebSocket client to process 2 subscribed to ``sample.note.*`` and
   also follows the tenant's Redis channel; notes are created by HTTP POST on process 1 and each
   event is timed from its ``occurred_at`` (set in the publishing transaction) and from the start of
   its POST, to its arrival on the socket (and on the Redis channel);
4. the phases, ``--events`` each: *paced* at each ``--rate`` (50 and 100 by default), a POST
   started every 1/rate s whether or not the earlier ones were answered (open loop: latency at a
   stated load), then *saturating*,
   ``--posters`` clients each posting as soon as its previous answer came (closed loop: as fast as
   the machine goes); both again with ``--idle`` (1,000) more connections held open on process 2
   (another tenant's, subscribed to ``*``);
5. write ``bench/results/realtime-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fcntl
import json
import multiprocessing
import os
import platform
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
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
    shown_arguments,
    with_database,
    write_doc_section,
)

DB_NAME = "inopsio_bench_rt"
NAMESPACE = "bench-rt"
START_MARK = "<!-- bench:realtime:start -->"
END_MARK = "<!-- bench:realtime:end -->"
TARGET_P99_MS = 50.0
#: How long the last events of a phase may take to arrive before they count as missing.
ARRIVAL_GRACE_SECONDS = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def create_tenants(owner_url: str, redis_url: str) -> list[tuple[str, str, str, str]]:
    """Two tenants with an owner each, made by the kernel's services; (slug, email, password, id)."""
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
            made.append((slug, email, password, str(tenant.id)))
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


# -- the receiver: its own process ----------------------------------------------------------------


def receiver_main(ws_base: str, slug: str, token: str, redis_url: str, channel: str, control: Connection) -> None:
    """Entry point of the receiver process: stamp each event's arrival until told to stop."""
    asyncio.run(receive(ws_base, slug, token, redis_url, channel, control))


async def receive(ws_base: str, slug: str, token: str, redis_url: str, channel: str, control: Connection) -> None:
    """Follow ``sample.note.*`` on a socket of process 2 and the tenant's Redis channel.

    Answers the parent's ``count`` (events arrived on the socket) and ``stop`` (then sends
    ``{note_id: [occurred_at, on_redis, on_socket]}``, wall-clock seconds) over ``control``.
    """
    import redis.asyncio as aioredis

    ws = await open_socket(ws_base, slug, token, "sample.note.*")
    redis = aioredis.from_url(redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    arrivals: dict[str, list[float]] = {}

    def stamp(event: dict[str, Any], slot: int, at: float) -> None:
        times = arrivals.get(event["data"]["note_id"])
        if times is None:
            occurred = dt.datetime.fromisoformat(event["occurred_at"]).timestamp()
            times = arrivals[event["data"]["note_id"]] = [occurred, float("nan"), float("nan")]
        if times[slot] != times[slot]:  # NaN: the first arrival only
            times[slot] = at

    async def from_socket() -> None:
        while True:
            raw = await ws.recv()
            at = time.time()
            message = json.loads(raw)
            if message.get("op") == "event":
                stamp(message["event"], 2, at)

    async def from_redis() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                stamp(json.loads(message["data"]), 1, time.time())

    tasks = [asyncio.create_task(from_socket()), asyncio.create_task(from_redis())]
    loop = asyncio.get_running_loop()
    control.send("ready")
    while True:
        command = await loop.run_in_executor(None, control.recv)
        if command == "stop":
            break
        control.send(sum(1 for t in arrivals.values() if t[2] == t[2]))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    control.send(arrivals)
    await ws.close()
    await pubsub.aclose()
    await redis.aclose()


class Receiver:
    """The parent's handle on a receiver process (its pipe is read off the event loop)."""

    def __init__(self, ws_base: str, slug: str, token: str, redis_url: str, channel: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, child = context.Pipe()
        self.process = context.Process(
            target=receiver_main, args=(ws_base, slug, token, redis_url, channel, child), daemon=True
        )
        self.process.start()
        if self._answer(60) != "ready":
            raise RuntimeError("the receiver process did not start")

    def _answer(self, timeout: float) -> Any:
        if not self.control.poll(timeout):
            self.process.kill()
            raise RuntimeError(f"the receiver process did not answer within {timeout} s")
        return self.control.recv()

    async def count(self) -> int:
        self.control.send("count")
        return int(await asyncio.to_thread(self._answer, 30))

    async def stop(self) -> dict[str, list[float]]:
        self.control.send("stop")
        arrivals: dict[str, list[float]] = await asyncio.to_thread(self._answer, 60)
        await asyncio.to_thread(self.process.join, 10)
        return arrivals


# -- load --------------------------------------------------------------------------------------------


class KeepAliveClient:
    """A minimal HTTP/1.1 client over keep-alive connections, opened as needed and reused.

    For the paced load: its cost per request stays the same however many requests are in flight
    (httpx's connection pool does work proportional to the queued requests times the connections,
    so an open-loop generator built on it slows itself down exactly when the server falls behind).
    """

    #: Idle connections older than this are closed rather than reused (uvicorn drops them after 5 s).
    MAX_IDLE_SECONDS = 2.0

    def __init__(self, base: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < self.MAX_IDLE_SECONDS:
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def post_json(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
        status_line = await reader.readline()
        if not status_line:
            writer.close()
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked responses are not expected here")
        content = await reader.readexactly(length)
        self.idle.append((reader, writer, time.monotonic()))
        return status, content

    async def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


class Load:
    """Posts notes on process 1, remembering when each POST started (wall clock)."""

    BODY = json.dumps({"title": "rt"}).encode()

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.headers = headers
        self.started: dict[str, float] = {}
        self.errors = 0
        #: Connections the paced load opened (its peak concurrency).
        self.connections = 0

    def _record(self, t0: float, status: int, body: bytes) -> bool:
        if status != 201:
            self.errors += 1
            return False
        self.started[json.loads(body)["id"]] = t0
        return True

    async def closed_loop(self, posters: int, events: int, stop_at: float) -> None:
        """``posters`` httpx clients, each posting as soon as its previous answer came."""
        remaining = events
        headers = {**self.headers, "Content-Type": "application/json"}

        async def poster(client: httpx.AsyncClient) -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < stop_at:
                remaining -= 1
                t0 = time.time()
                try:
                    response = await client.post("/api/v1/sample/notes", content=self.BODY, headers=headers)
                except httpx.HTTPError:
                    self.errors += 1
                    remaining += 1
                    continue
                if not self._record(t0, response.status_code, response.content):
                    remaining += 1

        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            await asyncio.gather(*(poster(client) for _ in range(posters)))

    async def paced(self, rate: float, events: int, stop_at: float) -> None:
        """One POST started every ``1/rate`` s on schedule, however long the earlier ones take."""
        client = KeepAliveClient(self.base)

        async def post_one() -> None:
            t0 = time.time()
            try:
                status, body = await client.post_json("/api/v1/sample/notes", self.BODY, self.headers)
            except (OSError, RuntimeError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.errors += 1
                return
            self._record(t0, status, body)

        began = time.monotonic()
        tasks = []
        for i in range(events):
            due = began + i / rate
            if due > stop_at:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post_one()))
        await asyncio.gather(*tasks)
        self.connections = client.opened
        await client.close()


async def measure(
    base1: str,
    ws2: str,
    redis_url: str,
    tenant: tuple[str, str, str],
    *,
    events: int,
    duration: float,
    pids: list[int],
    **load: Any,
) -> dict[str, Any]:
    """One phase: ``events`` notes posted on process 1 (paced at ``rate`` or by ``posters``), timed on process 2."""
    slug, tenant_id, token = tenant
    receiver = Receiver(ws2, slug, token, redis_url, f"{NAMESPACE}:events:{tenant_id}")
    poster = Load(base1, {"X-Tenant": slug, "Authorization": f"Bearer {token}"})
    loads: list[float] = []

    async def sample_load() -> None:
        while True:
            loads.append(os.getloadavg()[0])
            await asyncio.sleep(1)

    sampling = asyncio.create_task(sample_load())
    cpu_before = [cpu_seconds(pid) for pid in pids]
    began = time.monotonic()
    if "rate" in load:
        await poster.paced(load["rate"], events, began + duration)
    else:
        await poster.closed_loop(load["posters"], events, began + duration)
    posting = time.monotonic() - began
    deadline = time.monotonic() + ARRIVAL_GRACE_SECONDS
    while await receiver.count() < len(poster.started) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    sampling.cancel()
    cpu_used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    arrivals = await receiver.stop()
    on_socket = {note: t for note, t in arrivals.items() if t[2] == t[2]}
    from_commit = [(t[2] - t[0]) * 1000 for note, t in on_socket.items() if note in poster.started]
    to_redis = [(t[1] - t[0]) * 1000 for note, t in on_socket.items() if note in poster.started and t[1] == t[1]]
    from_post = [(t[2] - poster.started[note]) * 1000 for note, t in on_socket.items() if note in poster.started]
    # Every event's (POST start in s from the phase's start, ms from commit to socket, ms to Redis),
    # in POST order: to see whether a tail is spread out or one stall.
    first = min(poster.started.values(), default=0.0)
    samples = sorted(
        (round(poster.started[note] - first, 4), round((t[2] - t[0]) * 1000, 2), round((t[1] - t[0]) * 1000, 2))
        for note, t in on_socket.items()
        if note in poster.started
    )
    return {
        "load": load,
        "posted": len(poster.started),
        "received": sum(1 for note in poster.started if note in on_socket),
        "missing": len(set(poster.started) - set(on_socket)),
        "post_errors": poster.errors,
        "connections": poster.connections if "rate" in load else load["posters"],
        "events_per_second": len(poster.started) / posting,
        # CPU time of each web process during the phase, per event posted (robust to other load).
        "server_cpu_ms_per_event": [round(c * 1000 / max(1, len(poster.started)), 2) for c in cpu_used],
        "load_average_1min": {"min": min(loads), "max": max(loads), "mean": statistics.fmean(loads)},
        "from_commit_ms": summary(from_commit),
        "commit_to_redis_ms": summary(to_redis),
        "from_post_ms": summary(from_post),
        "samples": samples,
    }


def fmt(result: dict[str, Any]) -> str:
    c = result["from_commit_ms"]
    return (
        f"{result['posted']} events at {result['events_per_second']:.0f}/s, from commit p50 / p99 "
        f"{c['p50']:.1f} / {c['p99']:.1f} ms (load average {result['load_average_1min']['mean']:.1f})"
    )


async def run_phases(
    args: argparse.Namespace,
    base1: str,
    base2: str,
    redis_url: str,
    tenants: list[tuple[str, str, str, str]],
    pids: list[int],
) -> Any:
    (live_slug, *live_login, live_id), (idle_slug, *idle_login, _) = tenants
    live = (live_slug, live_id, sign_in(base1, live_slug, *live_login))
    idle_token = sign_in(base2, idle_slug, *idle_login)
    ws2 = base2.replace("http://", "ws://")
    events, duration = args.events, args.duration

    async def all_phases(label: str) -> dict[str, Any]:
        """Each paced rate, then the saturating posters; keyed by how the load was made."""
        phases: dict[str, Any] = {}
        for rate in args.rate:
            log(f"{label}: paced, {rate:g} POST/s, {events} events")
            phases[f"paced {rate:g}/s"] = result = await measure(
                base1, ws2, redis_url, live, events=events, duration=duration, pids=pids, rate=rate
            )
            log(f"  {fmt(result)}")
        log(f"{label}: saturating, {args.posters} posters in closed loop, {events} events")
        phases[f"{args.posters} posters"] = result = await measure(
            base1, ws2, redis_url, live, events=events, duration=duration, pids=pids, posters=args.posters
        )
        log(f"  {fmt(result)}")
        return phases

    log("warming up")
    await measure(base1, ws2, redis_url, live, events=1 << 30, duration=5, pids=pids, posters=args.posters)
    one = await all_phases("one socket")
    log(f"opening {args.idle} idle sockets on process 2")
    idle_sockets: list[ClientConnection] = []
    for start in range(0, args.idle, 50):
        batch = [open_socket(ws2, idle_slug, idle_token, "*") for _ in range(min(50, args.idle - start))]
        idle_sockets += await asyncio.gather(*batch)
    held = len(idle_sockets)
    with_idle = await all_phases(f"{held} idle sockets")
    still_open = sum(1 for s in idle_sockets if s.state.name == "OPEN")
    await asyncio.gather(*(s.close() for s in idle_sockets))
    return {"one_socket": one, "with_idle": with_idle, "idle_sockets": held, "idle_still_open": still_open}


def render(doc: dict[str, Any]) -> str:
    cfg = doc["settings"]
    results = doc["results"]

    def row(sockets: str, mode: str, r: dict[str, Any]) -> str:
        c, red, p = r["from_commit_ms"], r["commit_to_redis_ms"], r["from_post_ms"]
        la, cpu = r["load_average_1min"], r["server_cpu_ms_per_event"]
        return (
            f"| {sockets} | {mode} | {r['posted']:,} | {r['events_per_second']:.0f} | {c['p50']:.1f} | "
            f"{c['p90']:.1f} | **{c['p99']:.1f}** | {c['max']:.0f} | {red['p50']:.1f} / {red['p99']:.1f} | "
            f"{p['p50']:.1f} / {p['p99']:.1f} | {r['missing']} | {cpu[0]:.1f} + {cpu[1]:.1f} | "
            f"{la['min']:.1f} to {la['max']:.1f} |"
        )

    rows = []
    verdicts = []
    for key, sockets in (("one_socket", "1"), ("with_idle", f"1 + {results['idle_sockets']:,} idle")):
        for label, r in results[key].items():
            rows.append(row(sockets, label, r))
            ok = r["from_commit_ms"]["p99"] <= TARGET_P99_MS and r["missing"] == 0
            verdicts.append(f"{'PASS' if ok else '**FAIL**'} {label} with {sockets} socket(s)")
    table = "\n".join(rows)
    rates = " and ".join(f"{rate:g}" for rate in cfg["rate"])
    header = (
        "| sockets on process 2 | load | events | events/s | p50 ms (from commit) | p90 | p99 | max | "
        "on Redis p50 / p99 | from POST p50 / p99 | missing | CPU ms per event, web 1 + web 2 | load average |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    return f"""{START_MARK}
## Real time: event through web process 1, received by a WebSocket on web process 2

Issue 4's benchmark (`bench/realtime.py`). Two separate `inopsio serve` processes (one uvicorn worker
each, same PostgreSQL and Redis). Notes are created by `POST /api/v1/sample/notes` on process 1; the
note's `sample.note.created` event is written to the outbox in that transaction, and right after the
commit process 1 publishes it on the tenant's Redis channel (the fast path; the outbox dispatchers
publish it there only if that did not happen, see `docs/events.md`); process 2's hub pushes it to a
WebSocket client subscribed to `sample.note.*`. The client runs in a process of its own (so the load
generator never delays its clock) and also follows the tenant's Redis channel. "From commit" is
socket arrival minus the event's `occurred_at` (stamped in the publishing transaction, before its
commit; same clock); "on Redis" is the same for the client's Redis subscription; "from POST" also
includes the HTTP request itself.

Two ways to load it, {cfg["events"]:,} events per phase (after 5 s of warm-up):

- **paced** (open loop, the latency at a stated load): at {rates} events/s, a POST starts every
  1/rate s whether or not the earlier ones were answered;
- **saturating** (closed loop): {cfg["posters"]} clients each post as soon as their previous answer
  came, as fast as the machine goes. The client, both servers, PostgreSQL and Redis then compete for
  the CPUs, so this shows the latency of a machine with no headroom.

Run of {doc["started_at"]} (`bench/results/{doc["file"]}`): `{doc["command"]}`

- Machine: {doc["machine"]}.
  Client, both servers, PostgreSQL and Redis share it with other engineers' work; the last column
  is the 1-minute load average sampled each second of the phase (above 2, something waits for a
  CPU). "CPU ms per event" is the CPU time each web process used during the phase divided by the
  events posted (process 1 serves the POSTs; both dispatch).
- The paced client is a minimal HTTP/1.1 keep-alive client (its cost per request does not grow
  with the requests in flight); the saturating posters use httpx, as before.

{header}
{table}

- p99 from commit, target ≤ {TARGET_P99_MS:.0f} ms: {"; ".join(verdicts)}. {results["idle_still_open"]:,} of
  the {results["idle_sockets"]:,} idle connections were still open at the end.
- The idle sockets belong to another tenant and follow `*`: they cost their process one Redis
  subscription (one per tenant per process, not per socket) and memory, no per-event work.
{doc.get("notes", "").strip()}
{END_MARK}"""


def write_doc(section: str) -> None:
    write_doc_section(section, START_MARK, END_MARK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per phase")
    parser.add_argument("--duration", type=float, default=600.0, help="at most this many seconds per phase")
    parser.add_argument(
        "--rate", type=float, action="append", help="POSTs per second of a paced phase (repeatable; default 50 and 100)"
    )
    parser.add_argument("--posters", type=int, default=4, help="concurrent clients in the saturating phases")
    parser.add_argument("--notes", default="", help="a paragraph (Markdown list items) added to the docs section")
    parser.add_argument("--idle", type=int, default=1000, help="idle WebSocket connections in the later phases")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    args.rate = args.rate or [50.0, 100.0]
    # Stopped from outside (SIGTERM, or SIGINT where a shell ignores it): still stop the servers and
    # drop the database in the ``finally`` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Two runs would share the database and Redis namespace (and each other's CPUs): one at a time,
    # across worktrees too.
    lock = Path(tempfile.gettempdir(), "inopsio-bench-realtime.lock").open("w")  # noqa: SIM115  (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit("another bench/realtime.py is running (it holds /tmp/inopsio-bench-realtime.lock)")
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
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for i, (port, base) in enumerate(zip(ports, bases, strict=True), 1):
            server = Server(f"web {i}", [bin_path("inopsio"), "serve", "--port", str(port)], env, work / f"web{i}.log")
            servers.append(server)
            # One after the other: each checks the database roles' grants as it starts, and two
            # concurrent GRANTs on the same database can fail ("tuple concurrently updated").
            server.wait_ready(f"{base}/health/live", {200})
        pids = [server.process.pid for server in servers]
        results = asyncio.run(run_phases(args, bases[0], bases[1], redis_url, tenants, pids))
        doc = {
            "benchmark": "realtime",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"realtime-{stamp}.json",
            "command": ".venv/bin/python bench/realtime.py " + " ".join(shown_arguments(sys.argv[1:])),
            "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}, "
            f"open-file limit {limit}",
            "settings": {
                "events": args.events,
                "duration": args.duration,
                "rate": args.rate,
                "posters": args.posters,
                "idle": args.idle,
            },
            "results": results,
            "notes": args.notes,
        }
        (RESULTS_DIR / doc["file"]).write_text(json.dumps(doc, indent=1))
        log(f"wrote {(RESULTS_DIR / doc['file']).relative_to(ROOT)}")
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
