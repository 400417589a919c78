"""Every routine task: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``, ``nox -s migrations``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PACKAGES = [
    "-e",
    "./core",
    "-e",
    "./tests/plugins/sample",
    "-e",
    "./plugins/erp[test]",
    "-e",
    "./plugins/crm",
    "-e",
    ".[test]",
]


def install(session: nox.Session, *extra: str) -> None:
    session.install("--upgrade", "pip", silent=True)
    session.install(*PACKAGES, *extra)


def browser_assets(session: nox.Session) -> None:
    """``npm ci`` when node_modules is missing or older than package-lock.json: the pages need htmx
    and friends in the static folder, the browser tests need axe-core."""
    lock = Path("package-lock.json")
    marker = Path("node_modules/.package-lock.json")
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on INOPSIO_DATABASE_URL / INOPSIO_REDIS_URL or embedded services."""
    install(session)
    browser_assets(session)
    args = session.posargs or ["-q"]
    session.run("pytest", *args, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format), mypy on the kernel, import-linter contracts."""
    install(session, "-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session
def migrations(session: nox.Session) -> None:
    """Only the schema tests: one head per branch, upgrade/downgrade/upgrade, models match migrations."""
    install(session)
    session.run("pytest", "-q", "tests/core/test_migrations.py", *session.posargs)


#: ``nox -s bench`` runs them all; ``nox -s bench -- web auth`` runs the ones named.
BENCHES = {
    "kernel": "run.py",
    "auth": "auth_overhead.py",
    "realtime": "realtime.py",
    "outbox": "outbox.py",
    "web": "web.py",
    "erp-pdf": "erp_pdf.py",
    "erp-invoicing": "erp_invoicing.py",
    "crm-search": "crm_search.py",
    "crm-board": "crm_board.py",
}


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks in bench/ (needs wrk); results go to bench/results/ and docs/benchmarks.md."""
    install(session)
    browser_assets(session)
    chosen = session.posargs or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        session.error(f"unknown benchmark {unknown}; choose from {sorted(BENCHES)}")
    for name in chosen:
        session.run("python", f"bench/{BENCHES[name]}", env={"PYTHONUNBUFFERED": "1", **os.environ})
