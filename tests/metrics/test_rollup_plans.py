"""How PostgreSQL runs the statements that read an hour of raw events (metrics/rollups.py): the
reactions and follow-ups of the hour's replies are looked up per reply through their indexes,
never by hashing the whole table, whatever the planner estimates; and no statement is compiled
(JIT off on every connection, selcontrol/settings.py). The dashboard's read of an hour not yet
rolled up took 310 ms on 800,000 follow-ups before (bench/dashboard_render.py); 40 ms after."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from metrics import rollups

pytestmark = pytest.mark.django_db

HOUR = datetime(2026, 3, 10, 12, tzinfo=UTC)
REPLIES = 2_000
FOLLOWUPS = 150_000  # of other replies: a table much larger than the hour


@pytest.fixture
def busy_hour():
    """An hour of replies, and a follow-up and a reaction table far larger than it, with the
    planner's statistics up to date (as autovacuum keeps them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO metrics_responseevent (event_id, ts, hour, rollout_key, variant,
              channel_id, message_id, conversation_id, model, input_tokens, output_tokens,
              cached_tokens, latency_ms, latency_bucket, cost_usd, unpriced, user_text,
              response_text, received_at)
            SELECT 'e' || g, %(hour)s + g * interval '1 second', %(hour)s, 'prompts_v2',
              CASE WHEN g %% 2 = 0 THEN 'v1' ELSE 'v2_full' END, '1' || lpad(g::text, 17, '0'),
              'm' || g, '', 'm', 500, 200, 0, 900, 10, 0.001, false, '', '', now()
            FROM generate_series(1, %(replies)s) AS g
            """,
            {"hour": HOUR, "replies": REPLIES},
        )
        for table, columns, values in (
            (
                "metrics_followupevent",
                "event_id, ts, channel_id, message_id, reply_to, text, is_correction, "
                "correction_source, attributed, received_at",
                "'f' || g, %(hour)s, '1', 'fm' || g, 'other' || g, '', false, '', true, now()",
            ),
            (
                "metrics_reactionevent",
                "event_id, ts, channel_id, message_id, user_id, emoji, action, sentiment, "
                "attributed, received_at",
                "'x' || g, %(hour)s, '1', 'other' || g, 'u', '👍', 'add', 1, true, now()",
            ),
        ):
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {values} "
                "FROM generate_series(1, %(rows)s) AS g",
                {"hour": HOUR, "rows": FOLLOWUPS},
            )
        cursor.execute(
            "ANALYZE metrics_responseevent, metrics_followupevent, metrics_reactionevent"
        )


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (FORMAT JSON) " + sql,
            {"key": "prompts_v2", "lo": HOUR, "hi": HOUR + timedelta(hours=1)},
        )
        return json.dumps(cursor.fetchone()[0])


@pytest.mark.parametrize("statement", ["_AGGREGATE_SQL", "_CHANNEL_SQL", "_AGGREGATE_CHANNELS_SQL"])
def test_hour_statements__large_feedback_tables__looked_up_per_reply_by_index(busy_hour, statement):
    plan = _plan(getattr(rollups, statement))
    assert '"Node Type": "Hash Join"' not in plan
    for table, index in (
        ("metrics_followupevent", "followup_reply_to"),
        ("metrics_reactionevent", "reaction_message"),
    ):
        assert f'"Relation Name": "{table}"' in plan
        assert f'"Index Name": "{index}"' in plan, (table, plan)


def test_database_connection__compiles_no_statement():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
