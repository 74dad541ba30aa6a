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
DB = os.environ.get("SELCONTROL_BENCH_DB", "selcontrol_bench_metrics")
PORT = int(os.environ.get("SELCONTROL_BENCH_PORT", "8210"))
REDIS = os.environ.get("SELCONTROL_BENCH_REDIS", "redis://127.0.0.1:6379/2")
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
    for name, view in pydantic_views().items():
        urls.urlpatterns.insert(0, path(f"bench/{name}", view))
    clear_url_caches()
    return application


# --- validation through pydantic, for the comparison that decided against it (--pydantic) ------


def pydantic_views() -> dict:
    """POST /api/v1/events as it would be with the events validated by the pydantic models of
    metrics.ingest.schemas (``pydantic-events``: django-ninja Schema, as documented) or by plain
    pydantic BaseModels with the same fields (``pydantic-plain-events``): record_events with its
    validate_event swapped for one that validates through the model and then does what the model
    cannot (strict RFC 3339 time, lone surrogates, cached <= input, text truncated). An invalid
    event falls back to the hand-written validator for its sentence (not exercised here)."""
    import types
    from typing import Annotated

    from django.http import HttpResponse
    from django.views.decorators.csrf import csrf_exempt
    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

    from metrics.api import _parse_events
    from metrics.ingest import intake, schemas
    from metrics.ingest.events import Event, Invalid, _unencodable, parse_ts, validate_event
    from metrics.models import TEXT_LIMIT
    from rollout.models import ApiToken

    class Plain(BaseModel):
        model_config = ConfigDict(extra="allow")  # as the Schema models

    def plain(model):
        fields = {k: (f.annotation, f) for k, f in model.model_fields.items()}
        return create_model(model.__name__, __base__=Plain, **fields)

    plain_r, plain_a, plain_f = (
        plain(m) for m in (schemas.ResponseEvent, schemas.ReactionEvent, schemas.FollowupEvent)
    )
    adapters = {
        "pydantic-events": TypeAdapter(schemas.AnyEvent),
        "pydantic-plain-events": TypeAdapter(
            Annotated[plain_r | plain_a | plain_f, Field(discriminator="type")]
        ),
    }

    def validator(adapter):
        def validate(raw, now=None):
            try:
                m = adapter.validate_python(raw)
            except ValidationError:
                return validate_event(raw, now)  # raises Invalid with the contract's sentence
            ts = parse_ts(m.ts, "ts", now)
            for name, value in m.__dict__.items():
                if type(value) is str and _unencodable(value):
                    raise Invalid(f"{name} holds a lone surrogate")
            if m.type == "response":
                if m.cached_tokens > m.input_tokens:
                    raise Invalid("cached_tokens cannot exceed input_tokens")
                fields = {
                    "message_id": m.message_id,
                    "rollout_key": m.rollout,
                    "variant": m.variant,
                    "model": m.model,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cached_tokens": m.cached_tokens,
                    "cache_hit": m.cache_hit,
                    "latency_ms": m.latency_ms,
                    "error": m.error,
                    "conversation_id": m.conversation_id or "",
                    "user_text": (m.user_text or "")[:TEXT_LIMIT],
                    "response_text": (m.response_text or "")[:TEXT_LIMIT],
                }
            elif m.type == "reaction":
                fields = {
                    "message_id": m.message_id,
                    "emoji": m.emoji,
                    "action": m.action,
                    "user_id": m.user_id or "",
                }
            else:
                fields = {
                    "message_id": m.message_id,
                    "reply_to": m.reply_to,
                    "text": (m.text or "")[:TEXT_LIMIT],
                    "is_correction": m.is_correction,
                }
            return Event(id=m.id, type=m.type, ts=ts, channel_id=m.channel_id, fields=fields)

        return validate

    def view_for(adapter):
        original = intake.record_events
        record = types.FunctionType(
            original.__code__,
            {**vars(intake), "validate_event": validator(adapter)},
            "record_events",
            original.__defaults__,
            original.__closure__,
        )
        record.__kwdefaults__ = original.__kwdefaults__

        @csrf_exempt
        def view(request):
            raw = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            token = ApiToken.objects.filter(token_hash=ApiToken.hash(raw), revoked_at=None).first()
            if token is None or "events:write" not in token.scopes:
                return HttpResponse(status=401)
            result = record(_parse_events(request.read()))
            return HttpResponse(json.dumps(result.as_dict()), content_type="application/json")

        return view

    return {name: view_for(adapter) for name, adapter in adapters.items()}


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
    parser.add_argument(
        "--pydantic",
        action="store_true",
        help="also time /api/v1/events with validation through the pydantic models (between two "
        "runs of the real path, to see the drift)",
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
        extra = {}
        if args.pydantic:
            for name, path, tag in (
                ("pydantic (ninja Schema)", "/bench/pydantic-events", "pydn"),
                ("pydantic (BaseModel)", "/bench/pydantic-plain-events", "pydp"),
                ("/api/v1/events again", "/api/v1/events", "again"),
            ):
                extra[name] = load(path, token, args.seconds, args.clients, tag)
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
    rows_shown = [("/api/v1/events", fast), *extra.items(), ("naive INSERT per event", naive)]
    for name, r in rows_shown:
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
    for name, r in extra.items():
        print(
            f"{name} = {r['events_per_s'] / naive['events_per_s']:.1f}x the naive baseline, "
            f"{r['events_per_s'] / fast['events_per_s']:.2f}x /api/v1/events' first run"
        )


if __name__ == "__main__":
    main()
