"""The summary call over 10 million stored events, beside a raw-scan baseline in the same run.

Creates a throw-away PostgreSQL database, loads 60 days of a busy deployment straight into the
raw tables with generate_series (8,000,000 replies, 1,200,000 reactions, 800,000 follow-ups =
10,000,000 events; 20% of replies on v2_full with ~3.5x input tokens), builds the hourly and daily rollups
with the real rollup code (metrics.rollups: mark every hour dirty, then catch_up), and times:

- GET /api/v1/rollouts/prompts_v2/summary (token auth, Django's full stack, in-process client)
  over the last 24 hours, 7 days, 30 days and the whole 60 days, with since/until not on hour
  boundaries (the two edge hours are aggregated from raw rows), then again with one dirty hour
  (1000 fresh events ingested, no worker);
- the baseline: the same figures by one SQL query scanning the raw rows of the range
  (count, sums, percentile_cont, reactions and follow-ups joined).

    .venv/bin/python bench/summary_10m.py [--replies 8000000] [--calls 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "selcontrol_bench_summary"
DAYS = 60


def psql(sql: str, db: str = "postgres") -> str:
    done = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atqc",
            sql,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def configure_env() -> None:
    os.environ.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
            "SECRET_KEY": "bench-" + "x" * 40,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "testserver,127.0.0.1",
            "REDIS_URL": "redis://127.0.0.1:6379/2",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "selcontrol.settings",
        }
    )


TABLES = ("metrics_responseevent", "metrics_reactionevent", "metrics_followupevent")


def drop_indexes() -> list[str]:
    """Drop the raw tables' secondary indexes and unique constraints for the bulk load; return
    the statements that put them back."""
    restore = []
    for table in TABLES:
        for name, definition in (
            line.split("|", 1)
            for line in psql(
                f"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                f"WHERE conrelid = '{table}'::regclass AND contype = 'u'",
                DB,
            ).splitlines()
            if line
        ):
            psql(f"ALTER TABLE {table} DROP CONSTRAINT {name}", DB)
            restore.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        for name, definition in (
            line.split("|", 1)
            for line in psql(
                f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{table}' "
                f"AND indexname NOT LIKE '%pkey'",
                DB,
            ).splitlines()
            if line
        ):
            psql(f"DROP INDEX {name}", DB)
            restore.append(definition)
    return restore


def load(replies: int, end: datetime) -> None:
    start = end - timedelta(days=DAYS)
    span = DAYS * 86400
    chunk = 1_000_000
    for lo in range(0, replies, chunk):
        hi = min(replies, lo + chunk) - 1
        psql(
            f"""
SET TIME ZONE 'UTC'; SET synchronous_commit = off;
INSERT INTO metrics_responseevent (event_id, ts, hour, rollout_key, variant, channel_id, message_id,
  conversation_id, model, input_tokens, output_tokens, cached_tokens, cache_hit, latency_ms,
  latency_bucket, error, cost_usd, unpriced, user_text, response_text, received_at)
SELECT 'b' || g, ts, date_trunc('hour', ts), 'prompts_v2', v, (100000000000000000 + g % 300)::text,
  'm' || g, '', 'anthropic/claude-3.5-sonnet', it, ot, 0, false, lat,
  LEAST(320, GREATEST(1, floor(ln(lat) / ln(1.05))::int + 1)),
  CASE WHEN g % 97 = 0 THEN 'timeout' END, (it * 3 + ot * 15) / 1000000.0, false, '', '', now()
FROM (
  SELECT g, timestamptz '{start.isoformat()}' + (g::float8 * {span} / {replies}) * interval '1 second' AS ts,
    CASE WHEN g % 5 = 0 THEN 'v2_full' ELSE 'v1' END AS v,
    CASE WHEN g % 5 = 0 THEN 1500 + (g * 7919) % 500 ELSE 400 + (g * 7919) % 200 END AS it,
    100 + (g * 104729) % 300 AS ot,
    round((exp(7.2 + 0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) * CASE WHEN g % 5 = 0 THEN 1.15 ELSE 1 END)::numeric, 1)::float8 AS lat
  FROM generate_series({lo}::bigint, {hi}::bigint) AS g
) AS s""",
            DB,
        )
        print(f"  replies {hi + 1:,}", flush=True)
    # reactions and follow-ups on earlier replies, a minute or two after them
    psql(
        f"""
SET TIME ZONE 'UTC'; SET synchronous_commit = off;
INSERT INTO metrics_reactionevent (event_id, ts, channel_id, message_id, user_id, emoji, action, sentiment, attributed, received_at)
SELECT 'x' || g, timestamptz '{start.isoformat()}' + ((r::float8 * {span} / {replies}) + 60) * interval '1 second',
  (100000000000000000 + r % 300)::text, 'm' || r, 'u' || g, CASE WHEN g % 4 = 0 THEN '👎' ELSE '👍' END,
  'add', CASE WHEN g % 4 = 0 THEN -1 ELSE 1 END, true, now()
FROM (SELECT g, (g * 7) % {replies} AS r FROM generate_series(0::bigint, {int(replies * 0.15) - 1}::bigint) AS g) AS s""",
        DB,
    )
    psql(
        f"""
SET TIME ZONE 'UTC'; SET synchronous_commit = off;
INSERT INTO metrics_followupevent (event_id, ts, channel_id, message_id, reply_to, text, is_correction, correction_source, attributed, received_at)
SELECT 'f' || g, timestamptz '{start.isoformat()}' + ((r::float8 * {span} / {replies}) + 90) * interval '1 second',
  (100000000000000000 + r % 300)::text, 'u' || g, 'm' || r,
  CASE WHEN g % 6 = 0 THEN 'actually no' ELSE 'thanks' END, g % 6 = 0,
  CASE WHEN g % 6 = 0 THEN 'pattern' ELSE 'none' END, true, now()
FROM (SELECT g, (g * 11) % {replies} AS r FROM generate_series(0::bigint, {int(replies * 0.1) - 1}::bigint) AS g) AS s""",
        DB,
    )


RAW_SCAN = """
WITH r AS (
  SELECT variant, message_id, input_tokens, output_tokens, cost_usd, latency_ms, error
  FROM metrics_responseevent WHERE rollout_key = 'prompts_v2' AND ts >= %(since)s AND ts < %(until)s
)
SELECT r.variant, count(*), count(r.error), sum(r.input_tokens), sum(r.output_tokens), sum(r.cost_usd),
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.latency_ms),
  (SELECT count(*) FROM metrics_reactionevent x JOIN r r2 ON r2.message_id = x.message_id WHERE r2.variant = r.variant AND x.sentiment = 1),
  (SELECT count(*) FROM metrics_followupevent f JOIN r r3 ON r3.message_id = f.reply_to WHERE r3.variant = r.variant AND f.is_correction)
FROM r GROUP BY r.variant
"""


def timed(fn, calls: int) -> dict:
    fn()  # warm
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "median": statistics.median(times),
        "p95": times[max(0, int(len(times) * 0.95) - 1)],
        "max": times[-1],
    }


def main() -> None:
    global DAYS
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=8_000_000)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--days", type=int, default=60, help="days the replies span (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the database (to investigate)")
    args = parser.parse_args()
    DAYS = args.days
    configure_env()
    end = datetime.now(UTC)

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
        t = time.perf_counter()
        restore = drop_indexes()
        load(args.replies, end)
        for statement in restore:
            psql(f"SET maintenance_work_mem = '256MB'; {statement}", DB)
        psql("VACUUM ANALYZE", DB)
        events = int(
            psql(
                "SELECT (SELECT count(*) FROM metrics_responseevent) + (SELECT count(*) FROM "
                "metrics_reactionevent) + (SELECT count(*) FROM metrics_followupevent)",
                DB,
            )
        )
        print(f"loaded {events:,} events in {time.perf_counter() - t:.0f} s", flush=True)

        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db import connection
        from django.test import Client

        from metrics import rollups
        from metrics.ingest.intake import record_events
        from rollout import services

        t = time.perf_counter()
        hours = rollups.mark_all_dirty()
        while rollups.catch_up(time_budget=600)["remaining"]:
            pass
        build = time.perf_counter() - t
        rollup_rows = int(psql("SELECT count(*) FROM metrics_hourlyrollup", DB))
        daily_rows = int(psql("SELECT count(*) FROM metrics_dailyrollup", DB))
        print(
            f"rollups: {hours} hours, {rollup_rows} hourly and {daily_rows} daily rows, "
            f"built in {build:.0f} s",
            flush=True,
        )

        _, token = services.create_api_token(
            name="bench", scopes=["config:read"], actor=services.Actor("bench")
        )
        client = Client(headers={"Authorization": f"Bearer {token}"})
        until = end - timedelta(minutes=17)
        ranges = [
            ("24 hours", timedelta(days=1)),
            ("7 days", timedelta(days=7)),
            ("30 days", timedelta(days=30)),
            (f"{DAYS} days", timedelta(days=DAYS) - timedelta(minutes=1)),
        ]
        ranges = [(label, width) for label, width in ranges if width < timedelta(days=DAYS)]

        def summary_call(since, until):
            def call():
                answer = client.get(
                    "/api/v1/rollouts/prompts_v2/summary",
                    {"since": since.isoformat(), "until": until.isoformat()},
                )
                assert answer.status_code == 200, answer.content
                return answer.json()

            return call

        def raw_call(since, until):
            def call():
                with connection.cursor() as cursor:
                    cursor.execute(RAW_SCAN, {"since": since, "until": until})
                    return cursor.fetchall()

            return call

        results = []
        for label, width in ranges:
            since = until - width
            body = summary_call(since, until)()
            n = sum(v["responses"] for v in body["variants"].values())
            raw_rows = raw_call(since, until)()
            assert n == sum(row[1] for row in raw_rows), (n, raw_rows)  # same exact count
            results.append(
                (
                    label,
                    n,
                    timed(summary_call(since, until), args.calls),
                    timed(raw_call(since, until), 2),
                )
            )
            print(f"  timed {label}", flush=True)

        record_events(
            [
                {
                    "id": f"fresh-{i}",
                    "type": "response",
                    "ts": (until - timedelta(minutes=5)).isoformat(),
                    "channel_id": "100000000000000001",
                    "message_id": f"fresh-m-{i}",
                    "rollout": "prompts_v2",
                    "variant": "v1",
                    "model": "anthropic/claude-3.5-sonnet",
                    "input_tokens": 500,
                    "output_tokens": 200,
                    "latency_ms": 1300,
                    "error": None,
                }
                for i in range(1000)
            ],
            schedule=False,
        )
        since = until - timedelta(days=30)
        dirty = timed(summary_call(since, until), args.calls)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    print(
        f"\nsummary over {events:,} stored events ({DAYS} days, {rollup_rows} hourly and "
        f"{daily_rows} daily "
        f"rollup rows); "
        f"rollups built in {build:.0f} s; {os.cpu_count()}-core machine"
    )
    print(
        f"{'range':<10} {'replies':>10} {'summary p50':>12} {'p95':>8} {'max':>8} "
        f"{'raw scan p50':>13} {'ratio':>7}"
    )
    for label, n, s, r in results:
        print(
            f"{label:<10} {n:>10,} {s['median']:>10.1f}ms {s['p95']:>6.1f}ms {s['max']:>6.1f}ms "
            f"{r['median']:>11.0f}ms {r['median'] / s['median']:>6.0f}x"
        )
    print(
        f"30 days with one dirty hour (1000 events just ingested, no worker): "
        f"p50 {dirty['median']:.1f} ms, p95 {dirty['p95']:.1f} ms, max {dirty['max']:.1f} ms"
    )


if __name__ == "__main__":
    main()
