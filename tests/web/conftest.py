"""Browser tests: real headless Chromium (Debian's ``chromium``) driven by Playwright.

Every page a test opens is checked with axe-core (from the npm registry, ``node_modules/axe-core``)
for serious and critical WCAG 2.1 A/AA violations. A failing test leaves a screenshot of each open
page in ``artifacts/browser/`` (CI keeps the folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "artifacts" / "browser"


def chromium_path() -> str | None:
    return os.environ.get("INOPSIO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    if report.when == "call":
        item.stash.setdefault(_REPORTS, {})["call"] = report
    return report


_REPORTS = pytest.StashKey[dict[str, Any]]()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("no chromium on this machine: apt-get install chromium (CI installs it)")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` at the repository root")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        await browser.close()


class Browser:
    """Contexts (separate cookie jars: separate people) opened by one test, screenshotted on failure."""

    def __init__(self, chromium: Any) -> None:
        self.chromium = chromium
        self.pages: list[Any] = []
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    async def new_page(self) -> Any:
        # bypass_csp: only so axe-core can be injected; the pages themselves run under the real policy.
        context = await self.chromium.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.pages.append(page)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser(chromium: Any, request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    session = Browser(chromium)
    yield session
    report = request.node.stash.get(_REPORTS, {}).get("call")
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for index, page in enumerate(session.pages):
            try:
                await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}.png"), full_page=True)
            except Exception as exc:  # a closed page: nothing to show
                print(f"no screenshot of page {index}: {exc}")
    await session.close()
    assert not session.errors, f"JavaScript errors on the pages: {session.errors}"


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.1 A/AA violations of the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
            const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
            const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    return list(result)


async def _assert_accessible(page: Any) -> None:
    violations = await axe_violations(page)
    assert not violations, f"axe-core on {page.url}: {violations}"


@pytest.fixture
def assert_accessible() -> Any:
    """``await assert_accessible(page)``: no serious or critical axe-core violation on the page."""
    return _assert_accessible
