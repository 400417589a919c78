"""The auth-overhead benchmark (issue 3): the same tenant-scoped read with and without authentication.

``.venv/bin/python bench/auth_overhead.py``. Needs PostgreSQL and Redis (``BENCH_DATABASE_URL``,
``BENCH_REDIS_URL``; defaults: the local servers) and ``wrk``. Reuses ``bench/run.py``'s seeding,
server and machine helpers. Steps:

1. create a fresh database ``inopsio_bench_auth``, migrate it, seed tenants and ``sample_notes`` rows
   (``run.seed``), and one ``member`` per tenant (user, membership and Casbin grouping rows, as the
   identity service writes them);
2. start the full stack (``inopsio serve --workers 2``, API quota and per-user rate limit unlimited,
   access tokens valid for a day), sign every member in through ``POST /api/v1/auth/login``;
3. warm up, then alternate wrk runs of ``GET /api/v1/sample/public-notes/{id}`` (route ``public``: tenant
   from ``X-Tenant``, no credential) and ``GET /api/v1/sample/notes/{id}`` (bearer token verified, session
   revocation checked, per-user rate limit counted, Casbin ``sample.notes.read``), same rows, same load;
4. measure ``POST /api/v1/auth/login`` throughput with the configured argon2id cost;
5. write ``bench/results/auth-overhead-<time>.json`` and this benchmark's section of ``docs/benchmarks.md``
   (between its own markers; other sections are left alone); drop the database and the Redis keys.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run  # noqa: E402  (the kernel-read benchmark's helpers; bench/ is not a package)

ROOT = BENCH_DIR.parent
DOC = run.DOC
START_MARK = "<!-- bench:auth:start -->"
END_MARK = "<!-- bench:auth:end -->"
DB_NAME = "inopsio_bench_auth"
REDIS_NAMESPACE = "bench-auth"
TARGET_LOSS = 0.15
PASSWORD = "bench passphrase of the auth overhead run"
SCRIPT = BENCH_DIR / "auth_notes.lua"


def seed_members(owner_url: str, argon2: dict[str, int]) -> list[tuple[str, str]]:
    """One member per tenant, written as ``AccountService.create_member`` does; returns (slug, email)."""
    from argon2 import PasswordHasher

    from inopsio.db.base import new_id
    from inopsio.identity.rbac import role_subject, user_subject

    password_hash = PasswordHasher(
        time_cost=argon2["time_cost"], memory_cost=argon2["memory_kib"], parallelism=argon2["parallelism"]
    ).hash(PASSWORD)
    members: list[tuple[str, str]] = []
    with psycopg.connect(owner_url) as conn:
        for tenant_id, slug in conn.execute("SELECT id, slug FROM tenants ORDER BY slug").fetchall():
            user_id, email = new_id(), f"member@{slug}.bench.example.com"
            conn.execute(
                "INSERT INTO users (id, email, name, password_hash, password_changed_at, email_verified_at) "
                "VALUES (%s, %s, %s, %s, now(), now())",
                (user_id, email, "Bench member", password_hash),
            )
            conn.execute(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (%s, %s, 'member', now())",
                (tenant_id, user_id),
            )
            conn.execute(
                "INSERT INTO rbac_rules (ptype, v0, v1, v2) VALUES ('g', %s, %s, %s)",
                (user_subject(user_id), role_subject("member"), str(tenant_id)),
            )
            members.append((slug, email))
        conn.commit()
    return members


def sign_in_all(base_url: str, members: list[tuple[str, str]]) -> dict[str, str]:
    """Access token per tenant slug, through the real sign-in API."""
    tokens: dict[str, str] = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for slug, email in members:
            response = client.post(
                "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Tenant": slug}
            )
            response.raise_for_status()
            tokens[slug] = response.json()["access_token"]
    return tokens


def write_data_lua(
    pairs: list[tuple[str, str, str]], tokens: dict[str, str], emails: dict[str, str], path: Path
) -> None:
    def array(values: list[str]) -> str:
        return "{" + ",".join(f'"{v}"' for v in values) + "}"

    slugs = [slug for slug, _, _ in pairs]
    path.write_text(
        f"return {{slugs={array(slugs)},\nnote_ids={array([n for _, _, n in pairs])},\n"
        f"tokens={array([tokens[s] for s in slugs])},\nemails={array([emails[s] for s in slugs])},\n"
        f'password="{PASSWORD}"}}\n'
    )


def run_wrk(url: str, mode: str, data: Path, threads: int, connections: int, duration: int) -> dict[str, Any]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(SCRIPT)]
    done = subprocess.run([*argv, url, "--", mode, str(data)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON "))
    result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["non_2xx_or_errors"] = sum(result["errors"].values())
    return result


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["latency_us"]["p50"] for r in runs) / 1000,
        "p90_ms": statistics.median(r["latency_us"]["p90"] for r in runs) / 1000,
        "p99_ms": statistics.median(r["latency_us"]["p99"] for r in runs) / 1000,
        "rounds_rps": [round(r["rps"]) for r in runs],
        "errors": sum(r["non_2xx_or_errors"] for r in runs),
    }


def render(doc: dict[str, Any]) -> str:
    m, cfg, s = doc["machine"], doc["settings"], doc["summary"]
    pub, auth, login = s["public"], s["auth"], s["login"]

    def row(name: str, a: dict[str, Any]) -> str:
        rounds = ", ".join(f"{v:,}" for v in a["rounds_rps"])
        return (
            f"| {name} | {a['rps']:,.0f} | {a['p50_ms']:.1f} | {a['p90_ms']:.1f} | {a['p99_ms']:.1f} "
            f"| {rounds} | {a['errors']} |"
        )

    verdict = "pass" if s["loss"] <= TARGET_LOSS else "**FAIL**"
    a2 = cfg["argon2"]
    notes = "\n".join(f"- {line}" for line in doc.get("notes", []))
    login_row = (
        f"| login | {login['rps']:,.1f} | {login['p50_ms']:.1f} | {login['p90_ms']:.1f} | {login['p99_ms']:.1f} "
        f"| {login['errors']} |"
    )
    return f"""{START_MARK}
## Authentication overhead: the same read with and without a bearer token

Issue 3's benchmark (`bench/auth_overhead.py`). Two routes of the test plugin read the same
tenant-scoped row the same way (one-round-trip RLS read through `db_reader`, msgspec response):
`GET /api/v1/sample/public-notes/{{id}}` is `public` (tenant from `X-Tenant`, no credential), and
`GET /api/v1/sample/notes/{{id}}` needs `sample.notes.read`: the member's HS256 access token is
verified (kid, signature, expiry, claims; a token this process verified before is only checked for
expiry and key), its session is checked against the ended sessions each process holds, the per-user
rate limit is counted with the tenant quota (in-process, sent to Redis in batches), and Casbin's
answer for the permission is looked up (kept per process until the policy changes). Each request
picks a random (tenant, note) of {cfg["pairs"]:,} pairs and that tenant's member token.

Run of {doc["started_at"]} (`bench/results/{doc["file"]}`):

```
{doc["command"]}
```

- Machine: {m["nproc"]} CPUs ({m["cpu"]}), {m["ram_gib"]} GiB RAM, Linux {m["kernel"]}, Python {m["python"]},
  PostgreSQL {m["postgresql"]}, Redis {m["redis"]}, {m["wrk"]}. wrk, the server, PostgreSQL and
  Redis share these CPUs.
- Data: {cfg["tenants"]} tenants with one `member` each, {cfg["rows"]:,} `sample_notes` rows.
- Server: `inopsio serve --workers {cfg["server_workers"]}`, log level WARNING; quotas
  `INOPSIO_QUOTAS__API_CALLS_PER_MINUTE` and `INOPSIO_QUOTAS__REQUESTS_PER_MINUTE_PER_USER` empty
  (unlimited, still counted), `INOPSIO_ACCESS_TOKEN_SECONDS={cfg["access_token_seconds"]}`.
- Load: `wrk -t{cfg["threads"]} -c{cfg["connections"]} -d{cfg["duration"]}s` after {cfg["warmup"]} s of
  warm-up each; {cfg["rounds"]} rounds of public then authenticated, alternating. Medians over rounds.

| endpoint | rps | p50 ms | p90 ms | p99 ms | rps per round | errors |
|---|---:|---:|---:|---:|---|---:|
{row("public-notes (no auth)", pub)}
{row("notes (bearer + Casbin)", auth)}

- With auth: **{s["loss"] * 100:.1f} %** fewer rps than without (target ≤ {TARGET_LOSS * 100:.0f} %): {verdict}.
  Ratio auth / public: {s["ratio"]:.3f}.

### Sign-in throughput

`POST /api/v1/auth/login` with the right password for a random member
(`wrk -t{cfg["login_threads"]} -c{cfg["login_connections"]} -d{cfg["login_duration"]}s`): argon2id verify, throttle
check in Redis, new session, refresh token and audit entry, token pair. argon2id parameters from
the settings: time cost {a2["time_cost"]}, memory {a2["memory_kib"]} KiB ({a2["memory_kib"] // 1024} MiB),
parallelism {a2["parallelism"]}. Slow on purpose: this is what an attacker pays per guess too.

| endpoint | rps | p50 ms | p90 ms | p99 ms | errors |
|---|---:|---:|---:|---:|---:|
{login_row}

{notes}
{END_MARK}"""


#: Frames of the authenticated path, as py-spy names them (function (file)).
PROFILED = {
    # The middleware's own work (its __call__ frame also holds everything downstream of it).
    "authentication middleware (_authenticate)": "_authenticate (inopsio/identity/authentication.py",
    "JWT verify (TokenIssuer.verify)": "verify (inopsio/identity/tokens.py",
    "rate limit + revocation (count_request)": "count_request (inopsio/quotas/services.py",
    "access rules": "check_route (inopsio/identity/authentication.py",
    "Casbin enforce": "enforce (casbin/",
}


def profile_summary(path: Path) -> dict[str, float]:
    """Share of the busy samples (not waiting in the event loop's select) spent in each frame of PROFILED."""
    busy, hits = 0, dict.fromkeys(PROFILED, 0)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "select (selectors.py" in stack.rsplit(";", 1)[-1]:
            continue
        busy += int(count)
        for name, frame in PROFILED.items():
            if frame in stack:
                hits[name] += int(count)
    return {name: round(100 * n / busy, 1) for name, n in hits.items()} if busy else {}


def noise_notes(summary: dict[str, Any]) -> list[str]:
    notes = []
    for name in ("public", "auth"):
        rounds = summary[name]["rounds_rps"]
        if min(rounds) and max(rounds) / min(rounds) > 1.5:
            notes.append(
                f"The {name} rounds range from {min(rounds):,} to {max(rounds):,} rps: other work on the machine "
                "(load average in the JSON) moved the figures more than authentication does, so the ratio is "
                "within noise; rerun on a quiet machine for a firm figure."
            )
            break
    return notes


def write_doc(section: str) -> None:
    run.write_doc_section(section, START_MARK, END_MARK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=5_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--login-duration", type=int, default=10)
    parser.add_argument("--login-connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="py-spy record one worker during an auth run")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    from inopsio.settings import Settings

    defaults = Settings()
    argon2 = {
        "time_cost": defaults.argon2_time_cost,
        "memory_kib": defaults.argon2_memory_kib,
        "parallelism": defaults.argon2_parallelism,
    }
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    owner_url = run.with_database(base_url, DB_NAME)
    run.RESULTS_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    # Scratch files (server log, wrk data, profile) outside bench/results, which other runs may clear.
    work = Path(tempfile.mkdtemp(prefix=f"auth-overhead-{stamp}-"))
    access_seconds = 86_400
    server: run.Server | None = None
    try:
        run.log(f"creating {DB_NAME}, migrating")
        run.create_database(base_url, DB_NAME)
        env = run.app_env(
            owner_url,
            redis_url,
            INOPSIO_REDIS_NAMESPACE=REDIS_NAMESPACE,
            INOPSIO_QUOTAS__API_CALLS_PER_MINUTE="",
            INOPSIO_QUOTAS__REQUESTS_PER_MINUTE_PER_USER="",
            INOPSIO_ACCESS_TOKEN_SECONDS=str(access_seconds),
            INOPSIO_SECRET_KEY="bench-auth-" + "x" * 40,
        )
        subprocess.run([run.bin_path("inopsio"), "migrate"], env=env, check=True, cwd=ROOT)
        run.log(f"seeding {args.tenants} tenants, {args.rows:,} notes, one member each")
        run.seed(owner_url, args.tenants, args.rows)
        members = seed_members(owner_url, argon2)
        pairs = run.pick_pairs(owner_url, args.pairs)

        port = run.free_port()
        argv = [run.bin_path("inopsio"), "serve", "--port", str(port), "--workers", str(args.workers)]
        server = run.Server("full stack", argv, env, work / "server.log")
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(f"{url}/health/ready", {200})
        tokens = sign_in_all(url, members)
        data = work / "data.lua"
        write_data_lua(pairs, tokens, dict(members), data)

        slug, _, note_id = pairs[0]
        a = httpx.get(f"{url}/api/v1/sample/public-notes/{note_id}", headers={"X-Tenant": slug})
        b = httpx.get(
            f"{url}/api/v1/sample/notes/{note_id}",
            headers={"X-Tenant": slug, "Authorization": f"Bearer {tokens[slug]}"},
        )
        c = httpx.get(f"{url}/api/v1/sample/notes/{note_id}", headers={"X-Tenant": slug})
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.json() == b.json()
        assert c.status_code == 401, c.text  # the authenticated route really is guarded

        run.log("warming up")
        for mode in ("public", "auth"):
            run_wrk(url, mode, data, args.threads, args.connections, args.warmup)
        runs: list[dict[str, Any]] = []
        for round_number in range(1, args.rounds + 1):
            for mode in ("public", "auth"):
                result = run_wrk(url, mode, data, args.threads, args.connections, args.duration)
                result.update(target=mode, round=round_number, loadavg=os.getloadavg()[0])
                lat = result["latency_us"]
                run.log(
                    f"round {round_number} {mode}: {result['rps']:,.0f} rps, p50 {lat['p50'] / 1000:.1f} ms, "
                    f"p99 {lat['p99'] / 1000:.1f} ms, errors {result['non_2xx_or_errors']}"
                )
                runs.append(result)

        profile_file = None
        if args.profile:
            profile_file = profile(server, url, data, args, work)

        run.log("sign-in throughput")
        login = run_wrk(url, "login", data, 1, args.login_connections, args.login_duration)
        login.update(target="login")
        run.log(f"login: {login['rps']:,.1f} rps, p50 {login['latency_us']['p50'] / 1000:.1f} ms")
        server.stop()
        server = None

        public = aggregate([r for r in runs if r["target"] == "public"])
        auth = aggregate([r for r in runs if r["target"] == "auth"])
        summary = {
            "public": public,
            "auth": auth,
            "login": aggregate([login]),
            "ratio": auth["rps"] / public["rps"],
            "loss": 1 - auth["rps"] / public["rps"],
        }
        command = ".venv/bin/python bench/auth_overhead.py"
        if len(sys.argv) > 1:
            command = shlex.join(["bench/auth_overhead.py", *sys.argv[1:]])
        result_doc: dict[str, Any] = {
            "benchmark": "auth-overhead",
            "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
            "file": f"auth-overhead-{stamp}.json",
            "command": command,
            "machine": run.machine(owner_url),
            "settings": {
                "tenants": args.tenants,
                "rows": args.rows,
                "pairs": len(pairs),
                "duration": args.duration,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "threads": args.threads,
                "connections": args.connections,
                "login_threads": 1,
                "login_connections": args.login_connections,
                "login_duration": args.login_duration,
                "server_workers": args.workers,
                "access_token_seconds": access_seconds,
                "argon2": argon2,
            },
            "runs": [*runs, login],
            "summary": summary,
            "profile": str(profile_file) if profile_file else None,
            "notes": noise_notes(summary),
        }
        if profile_file is not None and profile_file.exists():
            shares = profile_summary(profile_file)
            result_doc["profile_shares"] = shares
            result_doc["notes"].append(
                "py-spy over both workers during one authenticated run, share of busy samples: "
                + ", ".join(f"{name} {share} %" for name, share in shares.items())
                + "."
            )
        (run.RESULTS_DIR / result_doc["file"]).write_text(json.dumps(result_doc, indent=2, default=str))
        run.log(
            f"public {public['rps']:,.0f} rps p99 {public['p99_ms']:.1f} ms | auth {auth['rps']:,.0f} rps "
            f"p99 {auth['p99_ms']:.1f} ms | {summary['loss'] * 100:.1f} % fewer with auth | "
            f"login {login['rps']:.1f} rps"
        )
        if not args.no_doc:
            write_doc(render(result_doc))
            run.log(f"wrote {DOC.relative_to(ROOT)}")
    finally:
        if server is not None:
            server.stop()
        run.forget_redis_namespace(redis_url, REDIS_NAMESPACE)
        if not args.keep:
            run.drop_database(base_url, DB_NAME)


def profile(server: run.Server, url: str, data: Path, args: argparse.Namespace, work: Path) -> Path:
    """py-spy (pip install py-spy) on one worker while wrk runs the authenticated read."""
    out = work / "auth-profile.txt"
    spy = subprocess.Popen(
        [
            run.bin_path("py-spy"),
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            "--duration",
            str(args.duration),
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    run_wrk(url, "auth", data, args.threads, args.connections, args.duration)
    spy.wait(timeout=args.duration + 30)
    return out


if __name__ == "__main__":
    main()
