"""Fixtures for the client tests: a real selcontrol server process (gunicorn) on the test
database, the default rollout recreated after each flush, tokens, and small real HTTP servers
that misbehave on purpose (garbage, 500s) for the fail-static tests.

Ports 8400-8449 belong to these tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from rollout import services
from rollout.models import Rollout
from tests.conftest import SYSTEM, replay_data_migrations

ROOT = Path(__file__).resolve().parents[2]
SERVER_PORT = int(
    os.environ.get("SELCONTROL_TEST_SERVER_PORT", "8401")
)  # override for parallel runs


def free_port(start: int = 8410, end: int = 8449) -> int:
    for port in range(start, end):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8410-8449")


def _database_url() -> str:
    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class ServerProcess:
    """``gunicorn selcontrol.wsgi`` on 127.0.0.1:port, pointed at the test database."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(f"/tmp/sc_client_server_{port}.log")

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4"),
            "SECRET_KEY": "client-tests-" + "k" * 40,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "selcontrol.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "1",
                "-k",
                "gthread",
                "--threads",
                "16",
                "--timeout",
                "60",
                "--graceful-timeout",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker) -> Iterator[ServerProcess]:
    """One live server for the session (the test database exists once django_db_setup ran)."""
    proc = ServerProcess(SERVER_PORT)
    proc.start()
    yield proc
    proc.stop()


def recreate_default_rollout() -> Rollout:
    replay_data_migrations()
    return Rollout.objects.get(key="prompts_v2")


@pytest.fixture
def rollout(transactional_db) -> Rollout:
    """The prompts_v2 rollout, committed, so the server process sees it."""
    return recreate_default_rollout()


@pytest.fixture
def bot_token(transactional_db) -> str:
    _, raw = services.create_api_token(
        name="sel-bot", scopes=["config:read", "events:write"], actor=SYSTEM
    )
    return raw


@pytest.fixture
def ops_token(transactional_db) -> str:
    _, raw = services.create_api_token(
        name="chatops", scopes=["rollout:operate", "config:read"], actor=SYSTEM
    )
    return raw


@pytest.fixture
def ops(server, ops_token) -> Iterator[httpx.Client]:
    """Chat-ops calls to the live server (rollback, PATCH, overrides)."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ops_token}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def client_kwargs(tmp_path) -> dict:
    """Files of a client under the test's tmp dir (never the user's ~/.cache)."""
    return {
        "config_cache": tmp_path / "config.json",
        "spool_dir": tmp_path / "spool",
        "backoff_max": 1.0,
    }


# -- small real HTTP servers that misbehave on purpose --------------------------------------------


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 whose answers a test sets: ``respond(method, path, body,
    headers) -> (status, headers, body bytes)``. Records every request."""

    def __init__(self, handler: Callable):
        self.handler = handler
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, body))
                status, headers, payload = outer.handler(
                    self.command, self.path, body, self.headers
                )
                if status is None:  # hang up without an answer
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posted_events(self) -> list[dict]:
        out = []
        for method, path, body in self.requests:
            if method == "POST" and path.startswith("/api/v1/events"):
                out.extend(json.loads(body)["events"])
        return out


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def factory(handler: Callable) -> ScriptedServer:
        srv = ScriptedServer(handler)
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.close()


def config_document(**rollout) -> dict:
    """A config document like the server's, for the scripted servers and bootstrap files."""
    entry = {
        "key": "prompts_v2",
        "enabled": True,
        "percentage": 50,
        "simplified_percentage": 0,
        "strategy": "sticky",
        "salt": "",
        "variants": {"control": "v1", "treatment": "v2_full", "simplified": "v2_simplified"},
        "overrides": {},
        "revision": 7,
    }
    entry.update(rollout)
    return {"revision": entry["revision"], "rollouts": [entry]}


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """A bounded wait for something to happen (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
