"""Operators, the bot and polling clients all at once, for a fixed time; then "no lost update".

Starts gunicorn (2 gthread workers x 8 threads) on a throw-away PostgreSQL database and runs, at
the same time, for --seconds (30):

- N operator processes (--operators 4), each in a loop: 70 % read-modify-write
  ``GET /api/v1/rollouts/prompts_v2`` then ``PATCH`` percentage = (percentage + 1) mod 101 with
  ``If-Match`` (a 409 means someone else wrote first: read again and retry), 30 % ``PUT`` an
  override of a channel of its own (a new channel each time);
- one bot process posting 1000-event batches to ``POST /api/v1/events`` back to back;
- --pollers (4) config clients: half long-poll (``GET /api/v1/config?wait=20`` with
  If-None-Match, answered when the revision moves), half ETag-poll every 200 ms.

Then it checks that no update was lost: the successful PATCHes, ordered by the revision they
produced, form one unbroken +1 chain (each read the state the previous one wrote); the final
percentage is the start plus the successful PATCHes (mod 101); the audit log holds exactly one
``rollout.update`` per successful PATCH and one ``override.set`` per successful PUT; and the
override list has every channel put. Prints per call type: count, 409s, errors (5xx; must be 0),
p50/p99 in ms. No Celery worker runs (queued rollup runs are discarded with the database).

    .venv/bin/python bench/load_operators.py [--seconds 30] [--operators 4] [--pollers 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_http import make_batch  # noqa: E402  (the same realistic 1000-event batches)

DB = "selcontrol_bench_load_operators"
PORT = 8510
REDIS = "redis://127.0.0.1:6379/12"
KEY = "prompts_v2"


def psql(sql: str, db: str = "postgres") -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAqc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "SECRET_KEY": "bench-" + "x" * 40,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": REDIS,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
        "SELCONTROL_API_RATE_LIMIT": "1000000",
        "DJANGO_SETTINGS_MODULE": "selcontrol.settings",
    }


def manage(*args: str) -> str:
    return subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", *args],
        cwd=ROOT,
        env=env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


class Http:
    """One keep-alive connection; returns (status, headers, body, seconds)."""

    def __init__(self, token: str):
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)

    def call(self, method: str, path: str, body: dict | bytes | None = None, headers=None):
        h = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=h)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
            return 599, {}, b"", time.perf_counter() - start
        return response.status, dict(response.getheaders()), payload, time.perf_counter() - start


def operator(k: int, token: str, seconds: float, out: mp.Queue) -> None:
    rng = random.Random(k)
    http_ = Http(token)
    calls: list[tuple[str, int, float]] = []
    patches: list[tuple[int, int, int]] = []  # (revision produced, percentage read, written)
    overrides: list[str] = []
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        if rng.random() < 0.7:
            while time.perf_counter() < end:
                status, headers, body, dt = http_.call("GET", f"/api/v1/rollouts/{KEY}")
                calls.append(("GET state", status, dt))
                if status != 200:
                    break
                read = json.loads(body)["percentage"]
                new = (read + 1) % 101
                status, _, body, dt = http_.call(
                    "PATCH",
                    f"/api/v1/rollouts/{KEY}",
                    {"percentage": new, "reason": f"bench operator {k}"},
                    {"If-Match": headers["ETag"]},
                )
                calls.append(("PATCH If-Match", status, dt))
                if status == 200:
                    patches.append((json.loads(body)["revision"], read, new))
                    break
                if status != 409:
                    break
        else:
            n += 1
            channel = str(4 * 10**17 + k * 10**6 + n)
            status, _, _, dt = http_.call(
                "PUT",
                f"/api/v1/rollouts/{KEY}/overrides/{channel}",
                {"variant": rng.choice(["v1", "v2_full"]), "reason": f"bench operator {k}"},
            )
            calls.append(("PUT override", status, dt))
            if status in (200, 201):
                overrides.append(channel)
    out.put(("operator", calls, patches, overrides))


def bot(token: str, seconds: float, out: mp.Queue) -> None:
    rng = random.Random("bot")
    batches = [make_batch(rng, "lo", n) for n in range(8)]
    http_ = Http(token)
    calls = []
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        body = batches[n % len(batches)]
        if n >= len(batches):
            body = body.replace(b"lo-", f"lo{n}-".encode())  # new event and message ids
        n += 1
        status, _, _, dt = http_.call("POST", "/api/v1/events", body)
        calls.append(("POST events (1000)", status, dt))
    out.put(("bot", calls, [], []))


def poller(k: int, token: str, seconds: float, out: mp.Queue) -> None:
    http_ = Http(token)
    calls = []
    etag = ""
    long_poll = k % 2 == 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        path = "/api/v1/config?wait=20" if long_poll and etag else "/api/v1/config"
        status, headers, _, dt = http_.call(
            "GET", path, headers={"If-None-Match": etag} if etag else {}
        )
        calls.append(("config long-poll" if long_poll else "config ETag poll", status, dt))
        etag = headers.get("ETag", etag)
        if not long_poll:
            time.sleep(0.2)
    out.put(("poller", calls, [], []))


def report(calls: list[tuple[str, int, float]], seconds: float) -> None:
    kinds = sorted({c[0] for c in calls})
    print(
        f"{'call':22} {'count':>7} {'per s':>7} {'409':>6} {'4xx':>5} {'5xx':>5} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    for kind in kinds:
        mine = [c for c in calls if c[0] == kind]
        lat = sorted(c[2] for c in mine)
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        print(
            f"{kind:22} {len(mine):7d} {len(mine) / seconds:7.1f} "
            f"{sum(c[1] == 409 for c in mine):6d} "
            f"{sum(400 <= c[1] < 500 and c[1] != 409 for c in mine):5d} "
            f"{sum(c[1] >= 500 for c in mine):5d} "
            f"{q[49] * 1000:8.1f} {q[98] * 1000:8.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--operators", type=int, default=4)
    parser.add_argument("--pollers", type=int, default=4)
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    server = None
    try:
        manage("migrate", "--noinput")
        ops = manage(
            "create_api_token", "bench-ops", "--scope", "rollout:operate", "--scope", "config:read"
        ).split()[-1]
        bot_token = manage("create_api_token", "bench-bot", "--scope", "events:write").split()[-1]
        reader = manage("create_api_token", "bench-reader", "--scope", "config:read").split()[-1]
        start_pct = int(psql(f"SELECT percentage FROM rollout_rollout WHERE key = '{KEY}'", DB))
        audit_before = int(psql("SELECT count(*) FROM rollout_auditentry", DB))
        server = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "selcontrol.wsgi",
                "-b",
                f"127.0.0.1:{PORT}",
                "-w",
                "2",
                "-k",
                "gthread",
                "--threads",
                "8",
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        queue: mp.Queue = mp.Queue()
        procs = [
            mp.Process(target=operator, args=(k, ops, args.seconds, queue))
            for k in range(args.operators)
        ]
        procs.append(mp.Process(target=bot, args=(bot_token, args.seconds, queue)))
        procs += [
            mp.Process(target=poller, args=(k, reader, args.seconds, queue))
            for k in range(args.pollers)
        ]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()

        calls = [c for r in results for c in r[1]]
        patches = sorted(p for r in results for p in r[2])
        overrides = [o for r in results for o in r[3]]
        print(
            f"{args.operators} operators, 1 bot (1000-event batches), {args.pollers} config "
            f"clients, {args.seconds:.0f} s; gunicorn 2 gthread workers x 8 threads, 2 cores\n"
        )
        report(calls, args.seconds)

        final_pct = int(psql(f"SELECT percentage FROM rollout_rollout WHERE key = '{KEY}'", DB))
        updates = int(
            psql(
                "SELECT count(*) FROM rollout_auditentry WHERE action = 'rollout.update' "
                "AND actor = 'token:bench-ops' AND reason LIKE 'bench operator %'",
                DB,
            )
        )
        override_audit = int(
            psql(
                "SELECT count(*) FROM rollout_auditentry WHERE action = 'override.set' "
                "AND actor = 'token:bench-ops'",
                DB,
            )
        )
        override_rows = int(
            psql(
                "SELECT count(*) FROM rollout_channeloverride o JOIN rollout_rollout r "
                f"ON o.rollout_id = r.id WHERE r.key = '{KEY}'",
                DB,
            )
        )
        chain = all(
            later[1] == earlier[2] for earlier, later in zip(patches, patches[1:], strict=False)
        ) and (not patches or patches[0][1] == start_pct)
        checks = {
            "successful PATCHes form one +1 chain by revision": chain,
            "final percentage = start + successful PATCHes (mod 101)": final_pct
            == (start_pct + len(patches)) % 101,
            "rollout.update audit entries = successful PATCHes": updates == len(patches),
            "override.set audit entries = successful PUTs": override_audit == len(overrides),
            "overrides stored = successful PUTs": override_rows == len(overrides),
            "no 5xx": not any(c[1] >= 500 for c in calls),
            "no 4xx but 409": not any(400 <= c[1] < 500 and c[1] != 409 for c in calls),
            "writes happened": bool(patches) and bool(overrides),
        }
        written = int(psql("SELECT count(*) FROM rollout_auditentry", DB)) - audit_before
        print(
            f"\nsuccessful PATCHes {len(patches)}, final percentage {final_pct} (start "
            f"{start_pct}), audit rollout.update {updates}; overrides put {len(overrides)}, "
            f"audit override.set {override_audit}, stored {override_rows}; "
            f"audit entries written {written}"
        )
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
        return 0 if all(checks.values()) else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
