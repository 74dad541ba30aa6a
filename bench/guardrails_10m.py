"""The guardrails' and the comparisons' per-channel reads over 10 million stored events.

Reuses bench/summary_10m.py's loader on its own database (8,000,000 replies over 60 days on
300 channels, each channel wholly on v1 or v2_full, 1,200,000 reactions, 800,000 follow-ups),
builds the rollups with the real rollup code (hourly, daily, and now per channel and hour), puts
prompts_v2 in Canary for the last 7 days, and times, beside the same per-channel figures from
one SQL query over the raw rows in the same run:

- ``guardrail_services.arms`` over the 7-day evidence window (hourly rollups + per-channel
  rollups: what every rate and latency rule reads each minute), and over 30 days;
- ``guardrail_services.recent_replies`` (the crash guard's last hour of raw replies);
- one whole ``evaluate_rollout`` (every preloaded rule, actions set to alert only);
- the dashboard's comparison table over 30 days (``series.comparison``, per-channel clusters).

    .venv/bin/python bench/guardrails_10m.py [--replies 8000000] [--calls 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import summary_10m as loader  # noqa: E402  (bench/summary_10m.py: the 10-million-event loader)

loader.DB = "selcontrol_bench_guardrails"

RAW_CHANNELS = """
WITH r AS MATERIALIZED (
  SELECT message_id, variant, channel_id, error FROM metrics_responseevent
  WHERE rollout_key = 'prompts_v2' AND ts >= %(since)s AND ts < %(until)s
)
SELECT r.variant, r.channel_id, count(*), count(r.error),
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM metrics_reactionevent x
                                 WHERE x.message_id = r.message_id AND x.sentiment = -1))
FROM r GROUP BY r.variant, r.channel_id
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=8_000_000)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database (to investigate)")
    args = parser.parse_args()
    loader.configure_env()
    db = loader.DB
    end = datetime.now(UTC)
    loader.psql(f"DROP DATABASE IF EXISTS {db}")
    loader.psql(f"CREATE DATABASE {db}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
        t = time.perf_counter()
        restore = loader.drop_indexes()
        loader.load(args.replies, end)
        for statement in restore:
            loader.psql(f"SET maintenance_work_mem = '256MB'; {statement}", db)
        loader.psql("VACUUM ANALYZE", db)
        print(f"loaded in {time.perf_counter() - t:.0f} s", flush=True)

        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db import connection

        from metrics import rollups
        from metrics.dashboard import series
        from metrics.guardrails import services as guardrail_services
        from metrics.guardrails.models import GuardrailRule
        from rollout import services
        from rollout.models import Rollout

        t = time.perf_counter()
        hours = rollups.mark_all_dirty()
        while rollups.catch_up(time_budget=600)["remaining"]:
            pass
        build = time.perf_counter() - t
        rows = int(loader.psql("SELECT count(*) FROM metrics_channelhourlyrollup", db))
        print(f"rollups: {hours} hours, {rows:,} per-channel rows, built in {build:.0f} s")

        until = end - timedelta(minutes=17)
        actor = services.Actor("bench", via="system")
        rollout = services.move_to_phase(
            Rollout.objects.get(key="prompts_v2"), phase=3, actor=actor, reason="bench",
            gate_override_reason="bench", now=until - timedelta(days=7),
        )  # fmt: skip
        GuardrailRule.objects.filter(rollout=rollout).update(action=GuardrailRule.Action.ALERT)

        def timed(fn, calls):
            fn()
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            return times[len(times) // 2], times[max(0, int(len(times) * 0.95) - 1)]

        def raw(since):
            with connection.cursor() as cursor:
                cursor.execute(RAW_CHANNELS, {"since": since, "until": until})
                return cursor.fetchall()

        results = []
        for label, width in (("7 days", timedelta(days=7)), ("30 days", timedelta(days=30))):
            since = until - width
            arms = guardrail_services.arms(rollout, since, until)
            raw_rows = raw(since)
            channels = {v: a.clusters["errors"].channels for v, a in arms.items()}
            want = {}
            for variant, _channel, _n, _e, _neg in raw_rows:
                want[variant] = want.get(variant, 0) + 1
            assert channels == want, (channels, want)
            for v, arm in arms.items():  # the same totals as the raw rows
                assert arm.clusters["errors"].n == sum(r[2] for r in raw_rows if r[0] == v)
                assert arm.clusters["errors"].y == sum(r[3] for r in raw_rows if r[0] == v)
            results.append(
                (f"arms() per channel, {label}", timed(lambda s=since: guardrail_services.arms(
                    rollout, s, until), args.calls), timed(lambda s=since: raw(s), 2))
            )  # fmt: skip
            print(f"  timed {label}", flush=True)
        results.append(
            ("recent_replies(), last hour", timed(lambda: guardrail_services.recent_replies(
                rollout, until - timedelta(hours=1), until), args.calls), None)
        )  # fmt: skip

        def evaluate():
            GuardrailRule.objects.filter(rollout=rollout).update(reset_at=None)
            from metrics.guardrails.models import GuardrailState

            GuardrailState.objects.all().delete()
            return guardrail_services.evaluate_rollout(rollout, now=until)

        outcomes = evaluate()
        results.append(("evaluate_rollout(), 7 rules", timed(evaluate, args.calls), None))
        window = series.load_window(rollout, until - timedelta(days=30), until, "day")

        def comparison():
            window.__dict__.pop("_channel_totals", None)
            return series.comparison(window, "v1", "v2_full")

        results.append(("dashboard comparison, 30 days", timed(comparison, args.calls), None))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            loader.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print(f"\nper-channel reads over {args.replies:,} replies (60 days, 300 channels); "
          f"rollups built in {build:.0f} s, {rows:,} per-channel rows")  # fmt: skip
    print(f"{'read':34} {'p50':>9} {'p95':>9}   raw-row SQL for the same per-channel figures")
    for label, (p50, p95), base in results:
        tail = f"{base[0]:9.0f} ms" if base else ""
        print(f"{label:34} {p50:7.1f}ms {p95:7.1f}ms   {tail}")
    print("rules:", ", ".join(f"{o.rule} {o.status}" for o in outcomes))


if __name__ == "__main__":
    main()
