"""Real ``coverage-criteria serve`` processes for the tests that need one."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 120  # only a guard against hanging; nothing is timed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", *options]


def start_server(env: dict[str, str], log_path: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` on a free port and wait until /health answers; returns the process and base URL."""
    port = free_port()
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            serve_command("--port", str(port), *options), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return server, base_url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"server did not answer /health:\n{log_path.read_text()}")
