"""The outbox throughput benchmark (issue 4): events per second from publish to fully dispatched.

``.venv/bin/python bench/outbox.py [--events 10000] [--processes 2]``. Needs PostgreSQL and Redis
(``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``; defaults: the local servers). Steps:

1. create a fresh database ``inopsio_bench_outbox`` and ``inopsio migrate`` it;
2. the script writes notes, each with its ``sample.note.created`` event published in the note's
   transaction through ``kernel.events.publish`` (``--per-transaction`` notes per transaction,
   ``--publishers`` transactions at a time), as fast as the database takes them. An event is
   dispatched when ``event_pending`` no longer holds it and both matching handlers (the sample
   plugin's ``sample.tag_new_note``, the webhooks ``*`` handler) are recorded as done (one tag per note);
3. backlog: publish ``--events`` events (a tenant of their own) with no dispatcher running, then
   start ``--processes`` separate ``inopsio serve`` processes (one uvicorn worker each) while a lock
   on ``event_pending`` holds their claims back; release it and time until every event is
   dispatched: the dispatchers' own throughput;
4. live: with those processes running, publish ``--events`` more (another tenant) and time from
   the first publish until every event is dispatched;
5. write ``bench/results/outbox-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

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

DB_NAME = "inopsio_bench_outbox"
NAMESPACE = "bench-outbox"
START_MARK = "<!-- bench:outbox:start -->"
END_MARK = "<!-- bench:outbox:end -->"
HANDLERS = 2  # sample.tag_new_note and kernel.webhooks match sample.note.created


def counts(owner_url: str) -> tuple[int, int, int, int]:
    """(pending events, of which claimed at least once, done handler deliveries, note tags), as the owner."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM event_pending), (SELECT count(*) FROM event_pending WHERE claims > 0), "
            "(SELECT count(*) FROM event_deliveries WHERE status = 'done'), "
            "(SELECT count(*) FROM sample_note_tags)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


class Publisher:
    """Writes notes with their ``sample.note.created`` events through a kernel that does not dispatch."""

    def __init__(self, owner_url: str, redis_url: str, args: argparse.Namespace) -> None:
        from inopsio.app import create_app
        from inopsio.settings import load_settings

        settings = load_settings(
            {}, database_url=owner_url, redis_url=redis_url, redis_namespace=NAMESPACE, dispatch_events=False
        )
        self.app = create_app(settings)
        self.kernel = self.app.state.kernel
        self.args = args

    async def create_tenant(self) -> Any:
        from inopsio.tenancy.schemas import TenantCreate

        slug = f"outbox-{secrets.token_hex(3)}"
        return await self.kernel.tenants.create(TenantCreate(slug=slug, name="Outbox bench"))

    async def publish(self, tenant_id: Any, events: int) -> float:
        """Publish ``events`` events; returns the seconds it took."""
        from inopsio_sample.controllers import NoteCreated
        from inopsio_sample.models import Note

        kernel, per = self.kernel, self.args.per_transaction
        sizes = [min(per, events - start) for start in range(0, events, per)]

        async def publisher() -> None:
            while sizes:
                n = sizes.pop()
                async with kernel.db.session(tenant_id) as session:
                    notes = [Note(title="outbox") for _ in range(n)]
                    session.add_all(notes)
                    await session.flush()
                    for note in notes:
                        await kernel.events.publish(
                            session, "sample.note.created", NoteCreated(note_id=note.id, title=note.title)
                        )

        t0 = time.monotonic()
        await asyncio.gather(*(publisher() for _ in range(self.args.publishers)))
        return time.monotonic() - t0


async def wait_dispatched(owner_url: str, baseline: tuple[int, int, int, int], events: int, seconds: float) -> None:
    """Until nothing is pending and both handlers are done for every event (one tag per note)."""
    deadline = time.monotonic() + seconds
    while True:
        pending, _, done, tags = counts(owner_url)
        if pending == 0 and done >= baseline[2] + HANDLERS * events and tags >= baseline[3] + events:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not dispatched within {seconds} s: {pending} pending, {done} handler deliveries done")
        await asyncio.sleep(0.02)


async def backlog_phase(owner_url: str, redis_url: str, args: argparse.Namespace, start_servers: Any) -> Any:
    """Publish ``--events`` with no dispatcher at work, then time how fast the dispatchers drain them.

    The processes start while this script holds a lock on ``event_pending`` that their claims wait
    for, so the clock starts when every dispatcher is up and the lock is released.
    """
    publisher = Publisher(owner_url, redis_url, args)
    async with publisher.app.lifespan():
        tenant = await publisher.create_tenant()
        baseline = counts(owner_url)
        published = await publisher.publish(tenant.id, args.events)
    log(f"backlog: published {args.events} events in {published:.2f} s with no dispatcher; starting them")
    with psycopg.connect(owner_url) as gate:
        gate.execute("LOCK TABLE event_pending IN SHARE MODE")
        start_servers()
        await asyncio.sleep(2.0)  # their dispatchers are waiting on the lock
        gate.commit()
        t0 = time.monotonic()
    await wait_dispatched(owner_url, baseline, args.events, args.timeout)
    drained = time.monotonic() - t0
    result = {
        "events": args.events,
        "publish_seconds": published,
        "drain_seconds": drained,
        "events_per_second": args.events / drained,
    }
    log(f"backlog: drained in {drained:.2f} s: {result['events_per_second']:.0f} events/s")
    return result


async def live_phase(owner_url: str, redis_url: str, args: argparse.Namespace) -> Any:
    """Publish ``--events`` while the dispatchers run; time from the first publish to all dispatched."""
    publisher = Publisher(owner_url, redis_url, args)
    async with publisher.app.lifespan():
        tenant = await publisher.create_tenant()
        while counts(owner_url)[0]:  # noqa: ASYNC110  (the new tenant's own events first)
            await asyncio.sleep(0.05)
        baseline = counts(owner_url)
        t0 = time.monotonic()
        published = await publisher.publish(tenant.id, args.events)
        await wait_dispatched(owner_url, baseline, args.events, args.timeout)
        elapsed = time.monotonic() - t0
    result = {
        "events": args.events,
        "publish_seconds": published,
        "publish_events_per_second": args.events / published,
        "end_to_end_seconds": elapsed,
        "events_per_second": args.events / elapsed,
        "drain_after_publish_seconds": elapsed - published,
    }
    log(
        f"live: {args.events} events published in {published:.2f} s, all dispatched after {elapsed:.2f} s: "
        f"{result['events_per_second']:.0f} events/s"
    )
    return result


def render(doc: dict[str, Any]) -> str:
    b, live, cfg = doc["results"]["backlog"], doc["results"]["live"], doc["settings"]
    return f"""{START_MARK}
## Outbox throughput: events per second, publish to dispatched

Issue 4's throughput benchmark (`bench/outbox.py`). {cfg["processes"]} separate `inopsio serve`
processes (one uvicorn worker each) run the dispatchers. The script writes notes, each with its
`sample.note.created` event published in the note's transaction through `kernel.events.publish`
({cfg["per_transaction"]} notes per transaction, {cfg["publishers"]} transactions at a time). An event
counts as dispatched when it is fanned out to the tenant's Redis channel, both matching handlers
(`sample.tag_new_note`, which inserts a row, and the webhooks `*` handler; the tenant has no webhook
subscription) are recorded as done, and it has left `event_pending`.

Run of {doc["started_at"]} (`bench/results/{doc["file"]}`): `{doc["command"]}`

- Machine: {doc["machine"]}. Script, servers, PostgreSQL and Redis share it.

| phase | events | **events/s** | measured |
|---|---:|---:|---|
| backlog: published first, then drained | {b["events"]:,} | **{b["events_per_second"]:,.0f}** | \
{b["drain_seconds"]:.2f} s from releasing the dispatchers (all up, held back by a lock) to the last event \
dispatched |
| live: published while the dispatchers run | {live["events"]:,} | **{live["events_per_second"]:,.0f}** | \
{live["end_to_end_seconds"]:.2f} s from the first publish to the last event dispatched; publishing alone took \
{live["publish_seconds"]:.2f} s ({live["publish_events_per_second"]:,.0f}/s), the last event was dispatched \
{live["drain_after_publish_seconds"]:.2f} s after it |

{doc.get("notes", "").strip()}
{END_MARK}"""


def write_doc(section: str) -> None:
    write_doc_section(section, START_MARK, END_MARK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2, help="inopsio serve processes dispatching")
    parser.add_argument("--per-transaction", type=int, default=50, help="notes (and events) per transaction")
    parser.add_argument("--publishers", type=int, default=4, help="publishing transactions at a time")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--notes", default="", help="a paragraph added under the table in the docs")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = with_database(base_url, DB_NAME)
    RESULTS_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS_DIR / f"outbox-{stamp}"
    work.mkdir()
    servers: list[tuple[Server, int]] = []
    try:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        env = app_env(owner_url, redis_url, INOPSIO_REDIS_NAMESPACE=NAMESPACE)
        import subprocess

        subprocess.run([bin_path("inopsio"), "migrate"], env=env, check=True, cwd=ROOT)

        def start_servers() -> None:
            # One after the other: their start-up GRANTs would collide ("tuple concurrently updated").
            for i in range(args.processes):
                port = free_port()
                argv = [bin_path("inopsio"), "serve", "--port", str(port)]
                server = Server(f"web {i + 1}", argv, env, work / f"web{i + 1}.log")
                servers.append((server, port))
                server.wait_ready(f"http://127.0.0.1:{port}/health/live", {200})

        backlog = asyncio.run(backlog_phase(owner_url, redis_url, args, start_servers))
        live = asyncio.run(live_phase(owner_url, redis_url, args))
        results = {"backlog": backlog, "live": live}
        doc = {
            "benchmark": "outbox",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"outbox-{stamp}.json",
            "command": ".venv/bin/python bench/outbox.py " + " ".join(a for a in sys.argv[1:] if a != "--no-doc"),
            "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}",
            "settings": {k: v for k, v in vars(args).items() if k not in ("notes", "no_doc")},
            "results": results,
            "notes": args.notes,
        }
        (RESULTS_DIR / doc["file"]).write_text(json.dumps(doc, indent=2))
        if not args.no_doc:
            write_doc(render(doc))
            log(f"wrote {DOC.relative_to(ROOT)}")
    finally:
        for server, _ in servers:
            server.stop()
        forget_redis_namespace(redis_url, NAMESPACE)
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
