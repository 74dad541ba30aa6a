"""Sustained event ingest over HTTP, beside a naive one-INSERT-per-event baseline in the same run.

Starts gunicorn (3 gthread workers x 8 threads, as the Dockerfile runs it) on a throw-away
PostgreSQL database, then pushes 1000-event batches (80% replies, 12% reactions, 8% follow-ups,
short texts, timestamps within the last hour as a live bot sends them; every batch new events
with new message ids) from concurrent keep-alive client processes for a fixed time, to

- POST /api/v1/events: metrics.ingest.intake.record_events: binary COPY into a staging table and one
  INSERT ... SELECT ... ON CONFLICT DO NOTHING per event type and batch (attribution included),
  dirty buckets marked, a rollup run queued;
- POST /bench/naive-events (mounted only in this benchmark's server): the same validation and
  pricing, then one ORM INSERT per event in its own savepoint (duplicates caught as
  IntegrityError), no rollup bookkeeping at all.

Reports events/s and batch latency (p50, p99) for both and their ratio. No Celery worker runs
(rollup runs queue up in Redis and are discarded), so the figures are ingest alone.

    .venv/bin/python bench/ingest_http.py [--seconds 20] [--clients 4] [--workers 3] [--threads 8]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "selcontrol_bench_metrics"
PORT = 8210
REDIS = "redis://127.0.0.1:6379/2"
BATCH = 1000


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


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
        "DJANGO_SETTINGS_MODULE": "selcontrol.settings",
    }


# --- the naive baseline, served by the benchmark's gunicorn only --------------------------------


def make_app():
    """gunicorn 'ingest_http:make_app()': the real WSGI app plus /bench/naive-events."""
    sys.path.insert(0, str(ROOT))
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    from django.db import IntegrityError, transaction
    from django.http import HttpResponse, JsonResponse
    from django.urls import clear_url_caches, path
    from django.views.decorators.csrf import csrf_exempt

    from metrics import reference
    from metrics.ingest import intake
    from metrics.ingest.events import Invalid, validate_event
    from metrics.models import FollowupEvent, ReactionEvent, ResponseEvent
    from rollout.models import ApiToken
    from selcontrol import urls

    @csrf_exempt
    def naive_events(request):
        raw = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = ApiToken.objects.filter(token_hash=ApiToken.hash(raw), revoked_at=None).first()
        if token is None or "events:write" not in token.scopes:
            return HttpResponse(status=401)
        events = json.loads(request.read())["events"]
        ref = reference.current()
        accepted = duplicates = 0
        rejected = []
        for index, item in enumerate(events):
            try:
                event = validate_event(item)
            except Invalid as exc:
                rejected.append({"index": index, "error": str(exc)})
                continue
            if event.type == "response":
                model, columns = ResponseEvent, intake.RESPONSE_COLUMNS
                row = intake._response_row(event, ref, datetime.now(UTC))
            elif event.type == "reaction":
                model, columns = ReactionEvent, intake.REACTION_COLUMNS
                row = intake._reaction_row(event, ref, datetime.now(UTC))
            else:
                model, columns = FollowupEvent, intake.FOLLOWUP_COLUMNS
                row = intake._followup_row(event, ref, datetime.now(UTC))
            try:
                with transaction.atomic():
                    model.objects.create(**dict(zip(columns, row, strict=True)))
                accepted += 1
            except IntegrityError:
                duplicates += 1
        return JsonResponse({"accepted": accepted, "duplicates": duplicates, "rejected": rejected})

    urls.urlpatterns.insert(0, path("bench/naive-events", naive_events))
    clear_url_caches()
    return application


# --- load generation --------------------------------------------------------------------------

TEXTS = ["who wrote dune?", "how do i reverse a list in python", "what does HTTP 413 mean"]
ANSWER = "A plausible answer of a few sentences, as Sel would write it, with a code block. " * 4


def make_batch(rng: random.Random, prefix: str, n: int) -> bytes:
    now = datetime.now(UTC)
    events = []
    for i in range(BATCH):
        eid = f"{prefix}-{n}-{i}"
        ts = (now - timedelta(seconds=rng.randrange(3600))).isoformat().replace("+00:00", "Z")
        channel = str(10**17 + rng.randrange(300))
        x = rng.random()
        if x < 0.80:
            v2 = rng.random() < 0.2
            events.append(
                {
                    "id": eid,
                    "type": "response",
                    "ts": ts,
                    "channel_id": channel,
                    "message_id": f"m-{eid}",
                    "rollout": "prompts_v2",
                    "variant": "v2_full" if v2 else "v1",
                    "model": "anthropic/claude-3.5-sonnet",
                    "input_tokens": rng.randrange(1500, 2000) if v2 else rng.randrange(400, 600),
                    "output_tokens": rng.randrange(100, 400),
                    "cached_tokens": 0,
                    "cache_hit": False,
                    "latency_ms": round(rng.lognormvariate(7.2, 0.4), 1),
                    "error": None,
                    "conversation_id": f"c-{prefix}-{n}-{i // 3}",
                    "user_text": rng.choice(TEXTS),
                    "response_text": ANSWER,
                }
            )
        elif x < 0.92:
            events.append(
                {
                    "id": eid,
                    "type": "reaction",
                    "ts": ts,
                    "channel_id": channel,
                    "message_id": f"m-{prefix}-{n}-{max(0, i - 3)}",
                    "emoji": rng.choice(["👍", "❤️", "👎"]),
                    "action": "add",
                    "user_id": f"u{rng.randrange(1000)}",
                }
            )
        else:
            events.append(
                {
                    "id": eid,
                    "type": "followup",
                    "ts": ts,
                    "channel_id": channel,
                    "message_id": f"u-{eid}",
                    "reply_to": f"m-{prefix}-{n}-{max(0, i - 2)}",
                    "text": rng.choice(["thanks", "actually no", "nope"]),
                }
            )
    return json.dumps({"events": events}).encode()


def client(path: str, token: str, seconds: float, tag: str, out: mp.Queue) -> None:
    rng = random.Random(tag)
    batches = [make_batch(rng, tag, n) for n in range(8)]  # prepared before the clock starts
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies, accepted, duplicates, errors, n = [], 0, 0, 0, 0
    began, done = time.time(), []  # (wall-clock completion time, accepted) per batch
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = batches[n % len(batches)]
        if n >= len(batches):
            # fresh event ids *and* message ids (replies, reactions' targets, follow-ups'
            # reply_to, conversations), so every batch is new events rather than duplicates
            body = body.replace(f"{tag}-".encode(), f"{tag}x{n}-".encode())
        n += 1
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            errors += 1
        else:
            answer = json.loads(data)
            accepted += answer["accepted"]
            duplicates += answer["duplicates"] + len(answer["rejected"])
            done.append((time.time(), answer["accepted"]))
    out.put((latencies, accepted, duplicates, errors, began, done))


def load(path: str, token: str, seconds: float, clients: int, phase: str) -> dict:
    queue: mp.Queue = mp.Queue()
    procs = [
        mp.Process(target=client, args=(path, token, seconds, f"{phase}{k}", queue))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for lat, *_ in results for x in lat)
    accepted = sum(r[1] for r in results)
    # events/s per 10-second window of the run (is it sustained, or fading as tables grow?)
    began = max(r[4] for r in results)  # every client is running from here on ...
    all_running = seconds - (began - min(r[4] for r in results))  # ... for this long
    windows = [0] * max(1, int(all_running // 10))
    for *_, done in results:
        for at, n in done:
            k = int((at - began) // 10)
            if 0 <= k < len(windows):
                windows[k] += n
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "batches": len(latencies),
        "accepted": accepted,
        "errors": sum(r[3] for r in results),
        "not_new": sum(r[2] for r in results),
        "windows": [n / 10 for n in windows],
        "events_per_s": accepted / seconds,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=3, help="gunicorn worker processes (Dockerfile: 3)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=32,
        help="threads per gunicorn worker (selcontrol/gunicorn_conf.py: 32)",
    )
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)
    token = (
        subprocess.run(
            [py, "manage.py", "create_api_token", "bench", "--scope", "events:write"],
            cwd=ROOT,
            env=env(),
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = subprocess.Popen(
        [
            py,
            "-m",
            "gunicorn",
            "ingest_http:make_app()",
            "--pythonpath",
            str(ROOT / "bench"),
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--worker-class",
            "gthread",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        load("/api/v1/events", token, 3, 2, "warm")
        fast = load("/api/v1/events", token, args.seconds, args.clients, "fast")
        naive = load("/bench/naive-events", token, args.seconds, args.clients, "naive")
        rows = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                DB,
                "-Atc",
                "SELECT (SELECT count(*) FROM metrics_responseevent) + (SELECT count(*) FROM "
                "metrics_reactionevent)"
                " + (SELECT count(*) FROM metrics_followupevent)",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    finally:
        server.terminate()
        server.wait(20)
        psql(f"DROP DATABASE IF EXISTS {DB}")
        subprocess.run(["redis-cli", "-n", REDIS.rsplit("/", 1)[1], "FLUSHDB"], capture_output=True)

    print(
        f"event ingest over HTTP: gunicorn {args.workers} gthread workers x {args.threads} "
        f"threads, {args.clients} keep-alive "
        f"clients, {BATCH}-event batches, {args.seconds:.0f} s each, {os.cpu_count()}-core machine"
    )
    print(
        f"{'path':<24} {'events/s':>9} {'batches':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'not new':>8}"
    )
    for name, r in (("/api/v1/events", fast), ("naive INSERT per event", naive)):
        print(
            f"{name:<24} {r['events_per_s']:>9.0f} {r['batches']:>8} {r['p50_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} "
            f"{r['errors']:>7} {r['not_new']:>8}"
        )
    print(
        "/api/v1/events per 10 s window: "
        + ", ".join(f"{w:,.0f}" for w in fast["windows"])
        + " events/s"
    )
    print(
        f"/api/v1/events = {fast['events_per_s'] / naive['events_per_s']:.1f}x the naive "
        "baseline's events/s; "
        f"p99 batch latency {fast['p99_ms'] / naive['p99_ms']:.2f}x; rows stored: {rows}"
    )


if __name__ == "__main__":
    main()
