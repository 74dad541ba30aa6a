"""Slow and idle clients against the production topology (issue 15, item 5): nginx with
deploy/nginx.conf in front of gunicorn with selcontrol.gunicorn_conf, as docker-compose runs them.

40 clients send their headers or their body one byte every 2 s (reconnecting whenever they are
cut off, as an attacker would) while 30 bots long-poll ``GET /api/v1/config?wait=20``; decide,
config and events must keep answering promptly meanwhile. Every loop here is bounded in time and
every connection goes to 127.0.0.1; the test stops by itself.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from .conftest import PORT_BASE
from .production import Nginx, ProductionServer

pytestmark = pytest.mark.live

GUNICORN_PORT, NGINX_PORT = PORT_BASE + 3, PORT_BASE + 4
SLOW_HEADERS = SLOW_BODIES = 20
LONG_POLLS = 30
PROBE_SECONDS = 20.0  # longer than a long-poll: every bot has its 304 by the end
PROMPT = 2.0
"""An answer slower than this (seconds) counts as not answered."""


@pytest.fixture
def production(stack) -> Iterator[tuple[Nginx, str]]:
    """nginx -> gunicorn (3 workers, as the Dockerfile) on the fault tests' own database."""
    server = ProductionServer(stack, GUNICORN_PORT, LOG_LEVEL="WARNING")
    proxy = Nginx(NGINX_PORT, GUNICORN_PORT)
    try:
        server.start()
        proxy.start()
        yield proxy, stack.token("slow-clients", "config:read", "events:write")
    finally:
        proxy.stop()
        server.stop()


class SlowClient(threading.Thread):
    """Sends a request one byte every ``interval`` seconds until ``stop`` is set; reconnects
    whenever the server closes the connection. ``body``: the headers go at once and the body
    trickles; otherwise the headers trickle."""

    def __init__(self, port: int, token: str, stop: threading.Event, *, body: bool, interval=2.0):
        super().__init__(daemon=True)
        self.port, self.stop, self.interval, self.body = port, stop, interval, body
        self.token = token
        self.connections = 0

    def _request(self) -> tuple[bytes, bytes]:
        if self.body:
            head = (
                "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n"
            ).encode()
            return head, b"x" * 100_000
        head = b"GET /api/v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        return b"", head + b"a" * 10_000

    def run(self) -> None:
        while not self.stop.is_set():
            head, trickle = self._request()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.connections += 1
                    sock.sendall(head)
                    for byte in trickle:
                        sock.sendall(bytes([byte]))
                        if self.stop.wait(self.interval):
                            return
            except OSError:  # cut off by the server (408 / closed): come back, like an attacker
                self.stop.wait(0.2)


class LongPoller(threading.Thread):
    """A legitimate bot: GET /api/v1/config?wait=20 with its ETag, again and again."""

    def __init__(self, url: str, token: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.token, self.stop = url, token, stop
        self.answers: list[int] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=40) as client:
            etag = client.get("/api/v1/config").headers.get("ETag", "")
            while not self.stop.is_set():
                try:
                    answer = client.get(
                        "/api/v1/config", params={"wait": 20}, headers={"If-None-Match": etag}
                    )
                except httpx.HTTPError:
                    self.answers.append(0)
                    self.stop.wait(0.5)
                    continue
                self.answers.append(answer.status_code)
                etag = answer.headers.get("ETag", etag)


def reply_event() -> dict:
    """One reply, as the bot's client sends it (bench/slow_clients.py imports this module
    without Django, so nothing here imports the app)."""
    event_id = uuid.uuid4().hex
    return {
        "id": event_id,
        "type": "response",
        "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "channel_id": "112233445566778899",
        "message_id": f"m-{event_id}",
        "rollout": "prompts_v2",
        "variant": "v1",
        "model": "anthropic/claude-3.5-sonnet",
        "input_tokens": 500,
        "output_tokens": 200,
        "latency_ms": 1200.0,
        "error": None,
    }


def probe(url: str, token: str) -> dict[str, tuple[int, float]]:
    """One call each of decide, config and events: (status, seconds); status 0 = no answer
    within PROMPT seconds."""
    headers = {"Authorization": f"Bearer {token}"}
    batch = {"events": [reply_event()]}
    calls = {
        "decide": ("GET", "/api/v1/rollouts/prompts_v2/decide", {"params": {"channel_id": "42"}}),
        "config": ("GET", "/api/v1/config", {}),
        "events": ("POST", "/api/v1/events", {"json": batch}),
    }
    results = {}
    with httpx.Client(base_url=url, headers=headers, timeout=PROMPT) as client:
        for name, (method, path, kwargs) in calls.items():
            started = time.monotonic()
            try:
                status = client.request(method, path, **kwargs).status_code
            except httpx.HTTPError:
                status = 0
            results[name] = (status, time.monotonic() - started)
    return results


def test_production_topology__40_slow_clients_and_30_long_polls__decide_config_events_answer(
    production,
):
    proxy, token = production
    stop = threading.Event()
    slow = [SlowClient(proxy.port, token, stop, body=False) for _ in range(SLOW_HEADERS)]
    slow += [SlowClient(proxy.port, token, stop, body=True) for _ in range(SLOW_BODIES)]
    polls = [LongPoller(proxy.url, token, stop) for _ in range(LONG_POLLS)]
    probes: list[dict[str, tuple[int, float]]] = []
    try:
        for thread in [*slow, *polls]:
            thread.start()
        time.sleep(3)  # every slow client has connected and every bot is waiting
        deadline = time.monotonic() + PROBE_SECONDS
        with ThreadPoolExecutor(1) as pool:
            while time.monotonic() < deadline:
                probes.append(pool.submit(probe, proxy.url, token).result(timeout=30))
                time.sleep(1)
    finally:
        stop.set()
        for thread in [*slow, *polls]:
            thread.join(timeout=45)
    assert len(probes) >= 8
    for name in ("decide", "config", "events"):
        answered = [p[name] for p in probes if p[name][0] == 200]
        assert len(answered) == len(probes), (name, probes)
        assert max(seconds for _, seconds in answered) < PROMPT
    assert all(s.connections >= 1 for s in slow)
    poll_answers = [code for poller in polls for code in poller.answers]
    assert poll_answers and set(poll_answers) <= {200, 304}, poll_answers
