"""How long an emergency rollback takes to reach a running bot, through a real server.

Creates its own PostgreSQL database, starts gunicorn (1 gthread worker x 8 threads) on it, and
runs two clients side by side: one with push (the long-poll, ``GET /api/v1/config?wait=20``) and
one with ETag polling only (``push=False``, every second). Then, N times: release the kill switch
(PATCH), wait until both clients serve v2 again, wait a random 0-1 s, call
``POST /api/v1/rollouts/prompts_v2/rollback``, and time how long each client takes to answer the
control variant. The clock starts before the rollback request is sent, so the figure includes
the rollback call itself.

    .venv/bin/python bench/client_propagation.py [--rollbacks 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selcontrol_client import SelControl  # noqa: E402

DB = "sc_client_bench_propagation"
PORT = 8430
URL = f"http://127.0.0.1:{PORT}"
CHANNEL = "123456789012345678"


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "SECRET_KEY": "bench-" + "x" * 40,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": "redis://127.0.0.1:6379/4",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "LOG_LEVEL": "WARNING",
    }


def token(*scopes: str) -> str:
    args = [sys.executable, "manage.py", "create_api_token", f"bench-{'-'.join(scopes)}"]
    for scope in scopes:
        args += ["--scope", scope]
    out = subprocess.run(args, cwd=ROOT, env=env(), check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def wait_for(predicate, timeout: float) -> float | None:
    """Seconds until predicate() held (checked every ~0.5 ms), or None after timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(0.0005)
    return None


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollbacks", type=int, default=30)
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)
    bot_token = token("config:read", "events:write")
    ops_token = token("rollout:operate", "config:read")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "selcontrol.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "1",
            "--threads",
            "8",
            "--worker-class",
            "gthread",
            "--graceful-timeout",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    tmp = tempfile.mkdtemp(prefix="sc-bench-")
    clients = {}
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{URL}/api/v1/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        ops = httpx.Client(
            base_url=URL, headers={"Authorization": f"Bearer {ops_token}"}, timeout=10
        )
        common = dict(spool_dir=None)
        clients = {
            "push (long-poll)": SelControl(
                URL, bot_token, push=True, config_cache=f"{tmp}/a.json", **common
            ),
            "ETag poll, 1 s": SelControl(
                URL,
                bot_token,
                push=False,
                poll_interval=1.0,
                config_cache=f"{tmp}/b.json",
                **common,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        missed = {name: 0 for name in clients}
        rng = random.Random(7)
        for _ in range(args.rollbacks):
            etag = ops.get("/api/v1/rollouts/prompts_v2").headers["ETag"]
            answer = ops.patch(  # re-enabling after a rollback names the revision (If-Match)
                "/api/v1/rollouts/prompts_v2",
                json={"enabled": True, "percentage": 100, "reason": "bench"},
                headers={"If-Match": etag},
            )
            answer.raise_for_status()
            for client in clients.values():
                if (
                    wait_for(lambda c=client: c.variant("prompts_v2", CHANNEL) == "v2_full", 10)
                    is None
                ):
                    raise SystemExit("a client never saw the release")
            time.sleep(rng.uniform(0, 1))
            start = time.perf_counter()
            ops.post(
                "/api/v1/rollouts/prompts_v2/rollback", json={"reason": "bench"}
            ).raise_for_status()
            pending = dict(clients)
            while pending and time.perf_counter() - start < 10:
                for name, client in list(pending.items()):
                    if client.variant("prompts_v2", CHANNEL) == "v1":
                        times[name].append(time.perf_counter() - start)
                        del pending[name]
                time.sleep(0.0005)
            for name in pending:
                missed[name] += 1
    finally:
        for client in clients.values():
            client.close(timeout=0)
        server.terminate()
        server.wait(10)
        psql(f"DROP DATABASE IF EXISTS {DB}")

    print(
        f"rollback propagation: {args.rollbacks} rollbacks through gunicorn (1 gthread worker x "
        f"8 threads) on PostgreSQL; clock from before POST .../rollback to the client's first "
        f"v1"
    )
    print(f"{'client':<18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missed':>7}")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(
            f"{name:<18} {pct(ms, 50):>8.0f} {pct(ms, 99):>8.0f} {max(ms):>8.0f} {missed[name]:>7}"
        )
    push_p99 = pct(times["push (long-poll)"], 99)
    print(
        f"goal: p99 under 2 s -> push p99 {push_p99:.3f} s "
        f"({'met' if push_p99 < 2 and not missed['push (long-poll)'] else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
