"""The web shell benchmark (issue 5): server time of each shell page, first contentful paint in
headless Chromium, and the JavaScript each page loads.

``.venv/bin/python bench/web.py`` (or ``nox -s bench -- web``). Needs PostgreSQL and Redis
(``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``; defaults: the local servers), Debian's ``chromium`` and
``npm ci`` done. Steps:

1. create a fresh database ``inopsio_bench_web`` and start ``inopsio serve --demo`` on it (one web
   process, as the README starts it), sign the demo owner in through the sign-in API (a web session);
2. server time at rest: for each page, ``--requests`` sequential GETs with the session cookie over
   loopback (client-measured, so it includes the loopback round trip), pages interleaved so none
   profits from running alone; median, p95, p99;
3. first contentful paint: each page loaded ``--loads`` times in a fresh browser context (cold cache:
   every script and stylesheet fetched again), FCP from the Paint Timing API; median, p95;
4. JavaScript per page: the scripts a page loads, summed gzip-compressed (what the server sends);
5. write ``bench/results/web-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``;
   drop the database and the Redis keys.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run  # noqa: E402  (shared helpers; bench/ is not a package)

DB_NAME = "inopsio_bench_web"
REDIS_NAMESPACE = "bench-web"
START_MARK = "<!-- bench:web:start -->"
END_MARK = "<!-- bench:web:end -->"
PAGES = ["/login", "/", "/account", "/admin/members", "/admin/roles", "/admin/settings", "/admin/audit", "/admin/usage"]
TARGET_SERVER_P95_MS = 30.0
TARGET_FCP_MS = 500.0
TARGET_JS_KB = 100.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
    }


def start_server(owner_url: str, redis_url: str, port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = run.app_env(
        owner_url,
        redis_url,
        INOPSIO_REDIS_NAMESPACE=REDIS_NAMESPACE,
        INOPSIO_PLUGINS="none",
        INOPSIO_RUN_WORKER_IN_PROCESS="true",
        INOPSIO_LOG_LEVEL="WARNING",
        # A benchmark client is one user asking far faster than a person: no per-user limit.
        INOPSIO_QUOTAS__REQUESTS_PER_MINUTE_PER_USER="",
    )
    out = log.open("wb")
    process = subprocess.Popen(
        [run.bin_path("inopsio"), "serve", "--port", str(port), "--demo"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"inopsio serve exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    found = re.search(r"with password (\S+)", log.read_text())
    if not found:
        raise SystemExit(f"no demo password in the output: {log.read_text()[-3000:]}")
    return process, found.group(1)


def sign_in(base: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/v1/auth/web-login",
        headers={"X-Tenant": "demo"},
        json={"email": "owner@demo.example.com", "password": password},
        timeout=30,
    )
    if response.status_code != 200:
        raise SystemExit(f"sign-in failed: {response.status_code} {response.text}")
    return dict(response.cookies)


def server_times(base: str, cookies: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    """Sequential GETs of every page (``/login`` signed out, the others signed in), interleaved."""
    samples: dict[str, list[float]] = {p: [] for p in PAGES}
    headers = {"Accept": "text/html", "X-Tenant": "demo"}  # Python does not resolve *.localhost
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=30) as signed_in,
        httpx.Client(base_url=base, headers=headers, timeout=30) as signed_out,
    ):

        def fetch(path: str) -> httpx.Response:
            return (signed_out if path == "/login" else signed_in).get(path)

        for _ in range(20):  # warm-up: template compilation, caches, connection pools
            for path in PAGES:
                fetch(path).raise_for_status()
        for _ in range(requests):
            for path in PAGES:
                started = time.perf_counter()
                response = fetch(path)
                samples[path].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code}")
    return {path: summary(values) for path, values in samples.items()}


async def browser_measures(base: str, cookies: dict[str, str], loads: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    executable = os.environ.get("INOPSIO_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    host = base.split("//", 1)[1].split(":", 1)[0]
    results: dict[str, Any] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        for path in PAGES:
            fcps: list[float] = []
            js_bytes = 0
            for attempt in range(loads + 2):
                context = await browser.new_context()
                await context.add_cookies(
                    [{"name": k, "value": v, "domain": host, "path": "/"} for k, v in cookies.items()]
                )
                page = await context.new_page()
                scripts: list[Any] = []
                page.on("response", lambda r, s=scripts: s.append(r) if r.request.resource_type == "script" else None)
                await page.goto(base + path, wait_until="load")
                fcp = await page.evaluate(
                    "() => new Promise(done => { const e = performance.getEntriesByName('first-contentful-paint');"
                    " if (e.length) return done(e[0].startTime);"
                    " new PerformanceObserver(l => done(l.getEntries()[0].startTime))"
                    ".observe({type: 'paint', buffered: true}); })"
                )
                if attempt >= 2:  # the first two loads warm the server, not the browser (each context is cold)
                    fcps.append(float(fcp))
                if attempt == 0:
                    for response in scripts:
                        js_bytes += len(gzip.compress(await response.body(), 6))
                await context.close()
            results[path] = {"fcp_ms": summary(fcps), "js_gzip_kb": round(js_bytes / 1024, 1)}
        await browser.close()
    return results


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        START_MARK,
        "## Web shell (issue 5)",
        "",
        f"`{result['command']}` on {result['date']}: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}, Chromium {result['chromium']}. One web process "
        "(`inopsio serve --demo`, as the README starts it), the demo owner signed in with a web session.",
        "",
        f"Server time at rest: {result['requests']} sequential requests per page over loopback, pages interleaved "
        f"(target p95 ≤ {TARGET_SERVER_P95_MS:g} ms). First contentful paint: {result['loads']} loads per page, each "
        f"in a fresh browser context (cold cache; target ≤ {TARGET_FCP_MS:g} ms). JavaScript: the scripts each page "
        f"loads, gzip-compressed (target ≤ {TARGET_JS_KB:g} KB).",
        "",
        "| page | server median ms | server p95 ms | server p99 ms | FCP median ms | FCP p95 ms | JS KB (gzip) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PAGES:
        s = result["server"][path]
        b = result["browser"][path]
        lines.append(
            f"| `{path}` | {s['median']} | {s['p95']} | {s['p99']} | {b['fcp_ms']['median']} | "
            f"{b['fcp_ms']['p95']} | {b['js_gzip_kb']} |"
        )
    worst_p95 = max(result["server"][p]["p95"] for p in PAGES)
    worst_fcp = max(result["browser"][p]["fcp_ms"]["p95"] for p in PAGES)
    worst_js = max(result["browser"][p]["js_gzip_kb"] for p in PAGES)
    verdict = lambda ok: "**holds**" if ok else "**misses**"  # noqa: E731
    lines += [
        "",
        f"Worst page: server p95 {worst_p95} ms ({verdict(worst_p95 <= TARGET_SERVER_P95_MS)} ≤ "
        f"{TARGET_SERVER_P95_MS:g} ms), FCP p95 {worst_fcp} ms ({verdict(worst_fcp <= TARGET_FCP_MS)} ≤ "
        f"{TARGET_FCP_MS:g} ms), JavaScript {worst_js} KB ({verdict(worst_js <= TARGET_JS_KB)} ≤ {TARGET_JS_KB:g} KB).",
        END_MARK,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per page")
    parser.add_argument("--loads", type=int, default=15, help="cold browser loads per page")
    args = parser.parse_args()
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = run.with_database(admin_url, DB_NAME)
    run.drop_database(admin_url, DB_NAME)
    run.create_database(admin_url, DB_NAME)
    port = run.free_port()
    log = BENCH_DIR / "results" / "web-server.log"
    log.parent.mkdir(exist_ok=True)
    process, password = start_server(owner_url, redis_url, port, log)
    try:
        api = f"http://127.0.0.1:{port}"
        cookies = sign_in(api, password)
        run.log("server time at rest")
        server = server_times(api, cookies, args.requests)
        run.log("first contentful paint and JavaScript weight in Chromium")
        browser = asyncio.run(browser_measures(f"http://demo.localhost:{port}", cookies, args.loads))
    finally:
        process.terminate()
        process.wait(30)
        run.drop_database(admin_url, DB_NAME)
        run.forget_redis_namespace(redis_url, REDIS_NAMESPACE)
    chromium = subprocess.run([shutil.which("chromium") or "chromium", "--version"], capture_output=True, text=True)
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "nox -s bench -- web",
        "machine": run.machine(admin_url),
        "chromium": (chromium.stdout.split() or ["?", "?"])[1],
        "requests": args.requests,
        "loads": args.loads,
        "server": server,
        "browser": browser,
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (BENCH_DIR / "results" / f"web-{stamp}.json").write_text(json.dumps(result, indent=2))
    section = render(result)
    run.write_doc_section(section, START_MARK, END_MARK)
    print(section)


if __name__ == "__main__":
    main()
