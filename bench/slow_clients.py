"""Slow clients and long-polls against web topologies: which one keeps decide, config and events
answering (issue 15, item 5).

Each topology runs on a throw-away PostgreSQL database while clients trickle their headers or
bodies one byte every 2 s (reconnecting when cut off) and bots long-poll
``GET /api/v1/config?wait=20``; a probe calls decide, config and events once a second and counts
an answer slower than 2 s as none. Topologies:

* ``gunicorn 3x8``: the old Dockerfile command (gthread, 3 workers x 8 threads), clients direct;
* ``gunicorn 3x32``: today's gunicorn settings (selcontrol/gunicorn_conf.py), clients direct;
* ``nginx + gunicorn 3x8``: the old gunicorn behind deploy/nginx.conf;
* ``nginx + gunicorn 3x32``: the production topology (docker-compose.yml).

    .venv/bin/python bench/slow_clients.py [--seconds 20] [--only "nginx + gunicorn 3x32"]

Everything runs on 127.0.0.1; every loop is bounded; processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.faults.conftest import Stack  # noqa: E402
from tests.faults.production import Nginx, ProductionServer  # noqa: E402
from tests.faults.test_slow_clients import LongPoller, SlowClient, probe  # noqa: E402

DB = "selcontrol_bench_slow"
GUNICORN_PORT, NGINX_PORT = 8961, 8962
TOPOLOGIES = [
    # name, threads per worker, behind nginx
    ("gunicorn 3x8", "8", False),
    ("gunicorn 3x32", "32", False),
    ("nginx + gunicorn 3x8", "8", True),
    ("nginx + gunicorn 3x32", "32", True),
]
LOADS = [
    # name, slow-header clients, slow-body clients, long-polls
    ("40 slow + 30 long-polls", 20, 20, 30),
    ("200 slow + 30 long-polls", 100, 100, 30),
]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def run(stack: Stack, token: str, threads: str, proxied: bool, load, seconds: float) -> dict:
    _, slow_headers, slow_bodies, long_polls = load
    server = ProductionServer(stack, GUNICORN_PORT, SELCONTROL_WEB_THREADS=threads)
    proxy = Nginx(NGINX_PORT, GUNICORN_PORT) if proxied else None
    stop = threading.Event()
    threads_started: list[threading.Thread] = []
    probes = []
    try:
        server.start()
        if proxy:
            proxy.start()
        url, port = (proxy.url, proxy.port) if proxy else (server.url, server.port)
        threads_started += [SlowClient(port, token, stop, body=False) for _ in range(slow_headers)]
        threads_started += [SlowClient(port, token, stop, body=True) for _ in range(slow_bodies)]
        threads_started += [LongPoller(url, token, stop) for _ in range(long_polls)]
        for thread in threads_started:
            thread.start()
        time.sleep(3)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probes.append(probe(url, token))
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads_started:
            thread.join(timeout=45)
        if proxy:
            proxy.stop()
        server.stop()
    result = {}
    for name in ("decide", "config", "events"):
        answered = [secs for status, secs in (p[name] for p in probes) if status == 200]
        result[name] = (
            len(answered),
            len(probes),
            statistics.median(answered) * 1000 if answered else None,
            max(answered) * 1000 if answered else None,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", default=None, help="one topology by name")
    args = parser.parse_args()
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    stack = Stack(
        SimpleNamespace(url=f"postgres://postgres@127.0.0.1:5432/{DB}"),
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
    )
    try:
        stack.manage("migrate", "--noinput")
        token = stack.token("bench-slow", "config:read", "events:write")
        print(f"probes every 1 s for {args.seconds:g} s; an answer over 2 s counts as none")
        print(f"{'topology':<24} {'load':<26} {'decide':>22} {'config':>22} {'events':>22}")
        for name, threads, proxied in TOPOLOGIES:
            if args.only and name != args.only:
                continue
            for load in LOADS:
                result = run(stack, token, threads, proxied, load, args.seconds)
                cells = []
                for endpoint in ("decide", "config", "events"):
                    ok, total, p50, worst = result[endpoint]
                    timing = f"p50 {p50:.0f} max {worst:.0f} ms" if ok else "no answer"
                    cells.append(f"{ok}/{total} {timing}")
                row = " ".join(f"{c:>22}" for c in cells)
                print(f"{name:<24} {load[0]:<26} {row}", flush=True)
    finally:
        psql(f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    main()
