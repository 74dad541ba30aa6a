"""Decide endpoint throughput and latency over HTTP, against the framework's floor.

Starts gunicorn (2 gthread workers) on a throw-away PostgreSQL database, then hammers
GET /api/v1/rollouts/prompts_v2/decide from concurrent keep-alive clients in separate processes,
and does the same for /healthz (no database, no auth) in the same run as the baseline.

    .venv/bin/python bench/decide_http.py [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "selcontrol_bench_decide"
PORT = 8931


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "SECRET_KEY": "bench-" + "x" * 40,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "LOG_LEVEL": "WARNING",
    }


def worker(path: str, token: str, seconds: float, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    headers = {"Authorization": f"Bearer {token}"}
    latencies = []
    errors = 0
    rng = random.Random(os.getpid())
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        url = path.format(channel=rng.randrange(10**17, 10**19))
        start = time.perf_counter()
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            errors += 1
    out.put((latencies, errors))


def load(path: str, token: str, seconds: float, clients: int) -> dict:
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=worker, args=(path, token, seconds, queue)) for _ in range(clients)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)
    token = (
        subprocess.run(
            [py, "manage.py", "create_api_token", "bench", "--scope", "config:read"],
            cwd=ROOT,
            env=env(),
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    subprocess.run(
        [
            py,
            "-c",
            "import django; django.setup(); from rollout import services; "
            "services.update_rollout('prompts_v2', actor=services.Actor('bench'), reason='bench', "
            "enabled=True, percentage=20, simplified_percentage=30)",
        ],
        cwd=ROOT,
        env={**env(), "DJANGO_SETTINGS_MODULE": "selcontrol.settings"},
        check=True,
    )
    server = subprocess.Popen(
        [
            py,
            "-m",
            "gunicorn",
            "selcontrol.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        load(
            "/api/v1/rollouts/prompts_v2/decide?channel_id={channel}", token, 2, args.clients
        )  # warm
        base = load("/healthz", token, args.seconds, args.clients)
        decide = load(
            "/api/v1/rollouts/prompts_v2/decide?channel_id={channel}",
            token,
            args.seconds,
            args.clients,
        )
    finally:
        server.terminate()
        server.wait(10)
        psql(f"DROP DATABASE IF EXISTS {DB}")

    print(
        f"decide over HTTP: gunicorn 2 gthread workers x 4 threads, {args.clients} keep-alive "
        f"clients, {args.seconds:.0f} s each, 2-core machine"
    )
    print(f"{'endpoint':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in (("/healthz", base), ("decide", decide)):
        print(
            f"{name:<10} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}"
        )
    print(
        f"decide throughput = {decide['rps'] / base['rps']:.2f}x of the /healthz floor; "
        f"p99 = {decide['p99_ms'] / base['p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
