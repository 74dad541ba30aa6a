"""Query strings never reach a log (issue 15, item 8), with the real processes: gunicorn started as
the Dockerfile starts it (selcontrol.gunicorn_conf) behind nginx with deploy/nginx.conf, and
gunicorn with its own access log turned on."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .conftest import PORT_BASE
from .production import Nginx, ProductionServer

pytestmark = pytest.mark.live

GUNICORN_PORT, NGINX_PORT = PORT_BASE + 5, PORT_BASE + 6
SECRET = "qs-secret-4f1d9c"


def send_secrets(url: str) -> None:
    """A bot that puts its token in the query string, on the API, the probes and a page."""
    for path in ("/api/v1/config", "/api/v1/rollouts/prompts_v2/decide", "/healthz", "/login/"):
        answer = httpx.get(f"{url}{path}", params={"token": SECRET, "channel_id": "1"}, timeout=10)
        assert answer.status_code < 500, (path, answer.status_code)
    httpx.post(f"{url}/api/v1/events?api_key={SECRET}", json={"events": []}, timeout=10)


def logged(read, needle: str, timeout: float = 5.0) -> str:
    """The log once it holds ``needle`` (a server writes its access line after the answer)."""
    deadline = time.monotonic() + timeout
    text = read()
    while needle not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = read()
    return text


@pytest.fixture
def gunicorn(stack):
    servers: list[ProductionServer] = []

    def start(*args: str) -> ProductionServer:
        server = ProductionServer(stack, GUNICORN_PORT, *args, LOG_FORMAT="json", LOG_LEVEL="INFO")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def test_production_topology__token_in_query_string__in_no_log_line(gunicorn):
    server = gunicorn()
    proxy = Nginx(NGINX_PORT, GUNICORN_PORT).start()
    try:
        send_secrets(proxy.url)
        nginx_log = logged(proxy.output, '"/api/v1/events"')
    finally:
        proxy.stop()
    output = server.output()
    assert SECRET not in nginx_log
    assert SECRET not in output
    nginx_paths = [json.loads(line)["path"] for line in nginx_log.splitlines() if '"path"' in line]
    assert "/api/v1/config" in nginx_paths and "/api/v1/events" in nginx_paths
    app_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    app_paths = [r.get("path") for r in app_lines if r.get("logger") == "selcontrol.request"]
    assert "/api/v1/config" in app_paths and "/login/" in app_paths


def test_gunicorn_access_log_turned_on__token_in_query_string__path_logged_without_it(gunicorn):
    server = gunicorn("--access-logfile", "-")
    send_secrets(server.url)
    output = server.output()
    assert SECRET not in output
    assert '"GET /api/v1/config HTTP/1.1" 401' in output
    assert '"POST /api/v1/events HTTP/1.1"' in output
