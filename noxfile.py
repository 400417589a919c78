"""Every routine task: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``, ``nox -s migrations``."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PACKAGES = ["-e", "./core", "-e", "./tests/plugins/sample", "-e", "./plugins/crm", "-e", ".[test]"]


def install(session: nox.Session, *extra: str) -> None:
    session.install("--upgrade", "pip", silent=True)
    session.install(*PACKAGES, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on INOPSIO_DATABASE_URL / INOPSIO_REDIS_URL or embedded services."""
    install(session)
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


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks in bench/ (needs wrk); results go to bench/results/ and docs/benchmarks.md."""
    install(session)
    session.run("python", "bench/run.py", *session.posargs, env={"PYTHONUNBUFFERED": "1", **os.environ})
