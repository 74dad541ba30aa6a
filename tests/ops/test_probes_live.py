"""The probes of a real gunicorn process whose database is unreachable: liveness stays 200 (so
an orchestrator does not restart every web process during a database outage), readiness is 503
and names the database, and the process logs JSON lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.live


def free_port(start: int = 8610, end: int = 8649) -> int:
    for port in range(start, end):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 8610-8648")


@pytest.fixture
def server_without_database(tmp_path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "server.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SECRET_KEY": "live-probe-test-" + "k" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/unreachable",
        "REDIS_URL": os.environ["REDIS_URL"],
        "LOG_FORMAT": "json",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [gunicorn, "selcontrol.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "2", "--worker-class", "gthread"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded wait for the server to listen
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_probes__database_unreachable__alive_but_not_ready(server_without_database):
    base, log = server_without_database
    assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    ready = httpx.get(base + "/readyz", timeout=20)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("database unreachable")
    assert ready.json()["checks"]["broker"] == "ok"
    assert "127.0.0.1:1" not in ready.text  # the reason, not the connection string
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "selcontrol.request"]
    assert {(a["path"], a["status"]) for a in access} >= {("/healthz", 200), ("/readyz", 503)}
