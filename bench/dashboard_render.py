"""Dashboard page renders over 10 million stored events, beside the same figures computed from
raw events in the same run.

Reuses bench/summary_10m.py's loader (generate_series straight into the raw tables: 8,000,000
replies, 1,200,000 reactions, 800,000 follow-ups over 60 days; rollups built with the real rollup
code) on its own throw-away database, adds the rollout's history (phase changes, a rollback, an
override: the chart markers), then times with Django's in-process client, logged in as a viewer:

- the dashboard page (last 24 h, 7 days, 30 days by day and by hour), the htmx fragment a range
  change fetches, a chart's JSON, the comparison and cost JSON, the guardrails fragment the
  page loads beside it, and the console's projection fragment;
- the 30-day page by hour again: with the in-process caches emptied before each call (a fresh
  web process; the shared cache, Redis, kept: "cold cache"), with the shared cache emptied
  too ("all cold"), and with the last hour recomputed by the rollup job before each call (a
  new fingerprint: "hour rewritten"); and the 30-day page with one dirty hour (1000 events
  just ingested, no rollup worker);
- the baseline: the 30-day page's figures by SQL over the raw rows (per day and variant: counts,
  sums, latency percentiles; totals with reactions and follow-ups joined).

    .venv/bin/python bench/dashboard_render.py [--replies 8000000] [--calls 15] [--keep | --reuse]

--keep leaves the database; --reuse times against it again (after bringing its rollups up to
date), which skips the ~5 minutes of loading and rollups.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import summary_10m as loader  # noqa: E402  (bench/summary_10m.py: the 10-million-event loader)

loader.DB = DB = os.environ.get("BENCH_DB", "selcontrol_bench_dashboard")

RAW_PER_DAY = """
SELECT date_trunc('day', ts), variant, count(*), count(error),
  count(*) FILTER (WHERE error = 'timeout'),
  sum(input_tokens), sum(output_tokens), sum(cost_usd), count(*) FILTER (WHERE cache_hit),
  count(cache_hit), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
FROM metrics_responseevent WHERE rollout_key = 'prompts_v2' AND ts >= %(since)s AND ts < %(until)s
GROUP BY 1, 2
"""


def configure_env() -> None:
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    loader.configure_env()
    os.environ.update(
        {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}", "REDIS_URL": redis_url}
    )


def build(replies: int, end: datetime) -> tuple[int, float]:
    """Create the database, load the events, build the rollups and the history; return the
    number of events and the rollup build time in seconds."""
    loader.psql(f"DROP DATABASE IF EXISTS {DB}")
    loader.psql(f"CREATE DATABASE {DB}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    t = time.perf_counter()
    restore = loader.drop_indexes()
    loader.load(replies, end)
    for statement in restore:
        loader.psql(f"SET maintenance_work_mem = '256MB'; {statement}", DB)
    loader.psql("VACUUM ANALYZE", DB)
    print(f"loaded {count_events():,} events in {time.perf_counter() - t:.0f} s", flush=True)

    import django

    django.setup()
    from metrics import rollups

    t = time.perf_counter()
    rollups.mark_all_dirty()
    while rollups.catch_up(time_budget=600)["remaining"]:
        pass
    seconds = time.perf_counter() - t
    # what autovacuum does on a production server (it is off on the development one): building
    # 60 days hour by hour rewrites each day's per-channel rows 24 times, which left ~95% of
    # metrics_channeldailyrollup dead rows for the timed reads to wade through
    loader.psql("VACUUM ANALYZE", DB)
    add_history(end)
    return count_events(), seconds


def count_events() -> int:
    return int(
        loader.psql(
            "SELECT (SELECT count(*) FROM metrics_responseevent) + (SELECT count(*) FROM "
            "metrics_reactionevent) + (SELECT count(*) FROM metrics_followupevent)",
            DB,
        )
    )


def add_history(now: datetime) -> None:
    """Phase changes, a rollback, a re-enable and an override in the last 30 days."""
    from rollout.models import AuditEntry, Rollout

    rollout = Rollout.objects.get(key="prompts_v2")
    history = [
        (29, AuditEntry.Action.PHASE_CHANGE, {"phase": "Alpha", "percentage": 5}),
        (26, AuditEntry.Action.PHASE_CHANGE, {"phase": "Beta", "percentage": 20}),
        (12, AuditEntry.Action.KILL_SWITCH_ENGAGE, {"enabled": False, "percentage": 20}),
        (11, AuditEntry.Action.KILL_SWITCH_RELEASE, {"enabled": True, "percentage": 20}),
        (
            6,
            AuditEntry.Action.OVERRIDE_SET,
            {"channel_id": "100000000000000007", "variant": "v2_full"},
        ),
        (3, AuditEntry.Action.PHASE_CHANGE, {"phase": "Canary", "percentage": 50}),
    ]
    for days_ago, action, after in history:
        AuditEntry.objects.create(
            rollout=rollout,
            action=action,
            actor="bench",
            after=after,
            reason="bench history",
            created_at=now - timedelta(days=days_ago),
        )
    Rollout.objects.filter(pk=rollout.pk).update(percentage=50, enabled=True)


def timed(fn, calls: int, setup=None) -> dict:
    """loader.timed's wall-clock figures, and the median CPU time of this process per call: on
    a machine shared with other work, wall time measures the neighbours too, CPU time mostly
    not (the database server's share is not in it). ``setup()`` runs before each call, untimed."""
    if setup:
        setup()
    fn()  # warm
    wall, cpu = [], []
    for _ in range(calls):
        if setup:
            setup()
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    wall.sort()
    return {
        "median": statistics.median(wall),
        "p95": wall[max(0, int(len(wall) * 0.95) - 1)],
        "max": wall[-1],
        "cpu": statistics.median(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=8_000_000)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database (to investigate)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time against the database a --keep run left (migrated again; events not reloaded)",
    )
    args = parser.parse_args()
    configure_env()
    end = datetime.now(UTC)

    try:
        if args.reuse and loader.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"):
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
            events, build_seconds = count_events(), float("nan")
            print(f"reusing {DB}: {events:,} events", flush=True)
            import django

            django.setup()
            from metrics import rollups as rollup_job

            rollup_job.catch_up(time_budget=300)  # the last run's one dirty hour
            loader.psql("VACUUM ANALYZE", DB)
        else:
            events, build_seconds = build(args.replies, end)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, check=True
        )

        import django

        django.setup()
        from django.contrib.auth.models import Group, User
        from django.db import connection
        from django.test import Client

        from metrics import rollups
        from metrics.ingest.intake import record_events

        # as each gunicorn worker does once its application is loaded (post_worker_init): the
        # start-up heap frozen out of the collector's full collections (selcontrol/heap.py)
        from selcontrol.heap import freeze_after_start

        frozen = freeze_after_start()
        rollup_rows = int(loader.psql("SELECT count(*) FROM metrics_hourlyrollup", DB))
        print(f"rollups: {rollup_rows} rows, built in {build_seconds:.0f} s", flush=True)

        user, _ = User.objects.get_or_create(username="bench-viewer")
        user.groups.add(Group.objects.get(name="viewers"))
        client = Client()
        client.force_login(user)
        htmx = {"HX-Request": "true"}
        pages = [
            ("page, last 24 h", "/metrics/prompts_v2/?range=24h", {}),
            ("page, 7 days", "/metrics/prompts_v2/?range=7d", {}),
            ("page, 30 days by day", "/metrics/prompts_v2/?range=30d", {}),
            ("page, 30 days by hour", "/metrics/prompts_v2/?range=30d&granularity=hour", {}),
            ("htmx body, 30 days", "/metrics/prompts_v2/?range=30d", htmx),
            (
                "chart JSON, 30 d hourly",
                "/metrics/prompts_v2/charts/latency.json?range=30d&granularity=hour",
                {},
            ),
            ("comparison JSON, 30 d", "/metrics/prompts_v2/comparison.json?range=30d", {}),
            ("cost JSON, 30 d", "/metrics/prompts_v2/cost.json?range=30d", {}),
            ("guardrails fragment", "/metrics/prompts_v2/guardrails/status/", htmx),
            ("projection fragment", "/metrics/projection?rollout=prompts_v2&percentage=37", {}),
        ]

        def get(path, headers):
            def call():
                answer = client.get(path, headers=headers)
                assert answer.status_code == 200, answer.content[:300]
                return answer

            return call

        results = [(label, timed(get(path, headers), args.calls)) for label, path, headers in pages]
        print("  pages timed", flush=True)

        from django.core.cache import cache

        from metrics.dashboard import series

        hourly = get("/metrics/prompts_v2/?range=30d&granularity=hour", {})

        def new_process():
            # as a fresh web process: no hour derived yet, no per-channel day sums kept; the
            # shared cache (Redis: what a page derived, by the window's fingerprint) as it is
            series._SLIM_CACHE.clear()
            getattr(rollups, "_CHANNEL_DAYS_CACHE", {}).clear()

        def all_cold():
            # a fresh web process, and no derivation in the shared cache (after a deploy that
            # changes the code deriving the figures, or Redis flushed); the rest of the cache
            # (config document, reference stamps) kept, as main's "cold cache" kept it
            new_process()
            client = cache._cache.get_client()  # type: ignore[attr-defined]  (RedisCache)
            derived = client.keys("*metrics:derived:*")
            if derived:
                client.delete(*derived)

        last_hour = rollups.hour_of(end) - timedelta(hours=1)

        def rewritten():
            # what the rollup job does after new events: one hour's rows rewritten (new
            # computed_at), so the window's fingerprint is new; the derived hours stay
            rollups.recompute_hour("prompts_v2", last_hour)

        results.append(("30 d by hour, cold cache", timed(hourly, args.calls, new_process)))
        results.append(("30 d by hour, all cold", timed(hourly, args.calls, all_cold)))
        results.append(("30 d by hour, hour rewritten", timed(hourly, args.calls, rewritten)))

        until = rollups.hour_of(end) + timedelta(hours=1)
        since = until - timedelta(days=30)

        def raw_figures():
            with connection.cursor() as cursor:
                cursor.execute(RAW_PER_DAY, {"since": since, "until": until})
                cursor.fetchall()
                cursor.execute(loader.RAW_SCAN, {"since": since, "until": until})
                return cursor.fetchall()

        raw = loader.timed(raw_figures, 3)

        fresh = [
            {
                "id": f"fresh-{end.timestamp():.0f}-{i}",
                "type": "response",
                "ts": (end - timedelta(minutes=5)).isoformat(),
                "channel_id": "100000000000000001",
                "message_id": f"fresh-m-{end.timestamp():.0f}-{i}",
                "rollout": "prompts_v2",
                "variant": "v1",
                "model": "anthropic/claude-3.5-sonnet",
                "input_tokens": 500,
                "output_tokens": 200,
                "latency_ms": 1300,
                "error": None,
            }
            for i in range(1000)
        ]
        kwargs = (
            {"schedule": False} if "schedule" in inspect.signature(record_events).parameters else {}
        )
        record_events(fresh, **kwargs)
        dirty = timed(get("/metrics/prompts_v2/?range=30d", {}), args.calls)
    finally:
        from django.db import connections

        connections.close_all()
        if not (args.keep or args.reuse):
            loader.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    print(
        f"\ndashboard over {events:,} stored events ({loader.DAYS} days, {rollup_rows} hourly "
        f"rollup rows; rollups built in {build_seconds:.0f} s); {os.cpu_count()}-core machine, "
        "in-process client"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; heap frozen: {frozen:,} objects")
    print(f"{'request':<29} {'p50':>8} {'p95':>8} {'max':>8} {'CPU p50':>8}")
    for label, r in [*results, ("30 days, one dirty hour", dirty)]:
        print(
            f"{label:<29} {r['median']:>6.1f}ms {r['p95']:>6.1f}ms {r['max']:>6.1f}ms "
            f"{r['cpu']:>6.1f}ms"
        )
    page30 = results[2][1]["median"]
    print(
        f"raw-event SQL for the 30-day page's figures: p50 {raw['median']:.0f} ms "
        f"({raw['median'] / page30:.0f}x the whole 30-day page render)"
    )


if __name__ == "__main__":
    main()
