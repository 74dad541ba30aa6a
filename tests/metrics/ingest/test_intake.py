"""metrics.ingest.intake.record_events: attribution, reactions, corrections, prices, rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from metrics import rollups
from metrics.ingest.intake import record_events
from metrics.models import (
    CorrectionPattern,
    DirtyHour,
    EmojiSentiment,
    FollowupEvent,
    HourlyRollup,
    ModelPrice,
    ReactionEvent,
    ResponseEvent,
)
from tests.metrics.conftest import T0, followup, reaction, response, totals

pytestmark = pytest.mark.django_db


def test_record_events__reaction_before_its_reply__attributed_when_reply_arrives():
    record_events(
        [reaction("m-late", "👍", eid="x1"), followup("m-late", "actually it's 1969", eid="f1")]
    )
    assert totals() == {}
    assert not ReactionEvent.objects.get().attributed
    record_events([response("late", message_id="m-late", variant="v2_full")])
    figures = totals()["v2_full"]
    assert (figures["reactions_positive"], figures["followups"], figures["corrections"]) == (
        1,
        1,
        1,
    )
    assert ReactionEvent.objects.get().attributed and FollowupEvent.objects.get().attributed


def test_record_events__late_reaction__counted_in_reply_hour_not_its_own():
    record_events([response("r", message_id="m", ts=T0)])
    record_events([reaction("m", ts=T0 + timedelta(hours=5))])
    rollups.catch_up()
    row = HourlyRollup.objects.get()
    assert (row.hour, row.reactions_positive) == (T0, 1)


def test_record_events__reaction_removed__undoes_its_add():
    record_events([response("r", message_id="m"), reaction("m", "👍", "add", user_id="u1")])
    record_events([reaction("m", "👍", "remove", user_id="u1", ts=T0 + timedelta(minutes=3))])
    assert totals()["v1"]["reactions_positive"] == 0


def test_record_events__remove_arrives_before_add__still_undone():
    record_events([reaction("m", "👎", "remove", ts=T0 + timedelta(minutes=5))])
    record_events(
        [reaction("m", "👎", "add", ts=T0 + timedelta(minutes=1)), response("r", message_id="m")]
    )
    assert totals()["v1"]["reactions_negative"] == 0


def test_record_events__remove_by_other_user__leaves_first_users_add():
    record_events([response("r", message_id="m"), reaction("m", "🔥", user_id="u1")])
    record_events([reaction("m", "🔥", "remove", user_id="u2", ts=T0 + timedelta(minutes=3))])
    assert totals()["v1"]["reactions_positive"] == 1


def test_record_events__default_sentiment_map__the_bots_four_positive_every_other_negative():
    record_events(
        [response("r", message_id="m")]
        + [
            reaction("m", e, user_id=f"u{i}")
            for i, e in enumerate(["👍", "❤️", "❤", "😀", "🔥", "👎", "😡", "🤔", "🦄"])
        ]
    )
    figures = totals()["v1"]
    assert (
        figures["reactions_positive"],
        figures["reactions_negative"],
        figures["reactions_neutral"],
    ) == (5, 4, 0)


def test_record_events__sentiment_changed_in_admin__applies_to_new_reactions():
    EmojiSentiment.objects.create(emoji="🦄", sentiment=EmojiSentiment.Sentiment.POSITIVE)
    record_events([response("r", message_id="m"), reaction("m", "🦄")])
    assert totals()["v1"]["reactions_positive"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "Actually, it was 1969.",
        "no, that's not it",
        "No. Paris is the capital",
        "That's wrong",
        "that's not right",
        "you're wrong about that",
        "not true",
        "nope",
        "I meant the other one",
        "wrong, it's 42",
        "that is incorrect",
        "uh no",
        "no",
    ],
)
def test_record_events__correction_text__counted_as_correction(text):
    record_events([response("r", message_id="m"), followup("m", text)])
    assert totals()["v1"]["corrections"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "thanks!",
        "nobody asked but ok",
        "know what, cool",
        "can you actually explain more?",
        "no worries",
        "No problem, thanks",
        "no way, that is so cool",
        "",
    ],
)
def test_record_events__ordinary_followup__not_a_correction(text):
    record_events([response("r", message_id="m"), followup("m", text)])
    assert totals()["v1"]["corrections"] == 0


def test_record_events__explicit_is_correction__wins_over_patterns():
    record_events(
        [
            response("r", message_id="m"),
            followup("m", "actually great", is_correction=False),
            followup("m", "lovely", is_correction=True),
        ]
    )
    assert totals()["v1"]["corrections"] == 1


def test_record_events__new_pattern_in_admin__detects_corrections():
    CorrectionPattern.objects.create(pattern=r"\bnah\b")
    record_events([response("r", message_id="m"), followup("m", "nah, that's the sequel")])
    assert FollowupEvent.objects.get().correction_source == "pattern"


def test_record_events__guide_price__cost_from_tokens():
    record_events([response("r", input_tokens=1750, output_tokens=0)])
    assert ResponseEvent.objects.get().cost_usd == Decimal("0.00525")


def test_record_events__cached_tokens__billed_at_cached_rate():
    record_events([response("r", input_tokens=1000, cached_tokens=600, output_tokens=100)])
    # 400 * 3 + 600 * 0.30 + 100 * 15 dollars per million
    assert ResponseEvent.objects.get().cost_usd == Decimal("0.00288")


def test_record_events__price_changed__old_replies_keep_price_of_their_day():
    record_events([response("old", ts=T0, input_tokens=1_000_000, output_tokens=0)])
    ModelPrice.objects.create(
        model="anthropic/claude-3.5-sonnet",
        valid_from=T0 + timedelta(days=1),
        input_per_million=Decimal("2"),
        output_per_million=Decimal("10"),
        cached_per_million=Decimal("0.2"),
    )
    record_events(
        [
            response(
                "before", ts=T0 + timedelta(hours=23), input_tokens=1_000_000, output_tokens=0
            ),
            response(
                "after", ts=T0 + timedelta(days=1, hours=1), input_tokens=1_000_000, output_tokens=0
            ),
        ]
    )
    costs = dict(ResponseEvent.objects.values_list("event_id", "cost_usd"))
    assert costs == {"old": Decimal(3), "before": Decimal(3), "after": Decimal(2)}


def test_record_events__unknown_model__zero_cost_counted_unpriced():
    record_events([response("r", model="mystery/model-9")])
    row = ResponseEvent.objects.get()
    assert (row.cost_usd, row.unpriced) == (0, True)
    assert totals()["v1"]["unpriced"] == 1


def test_record_events__response_with_known_message_id__duplicate():
    record_events([response("a", message_id="m")])
    assert record_events([response("b", message_id="m")]).duplicates == 1
    assert ResponseEvent.objects.count() == 1


def test_catch_up__after_ingest__rollups_equal_raw_and_nothing_dirty():
    events = [
        response(
            f"r{i}",
            ts=T0 + timedelta(minutes=7 * i),
            variant=("v1", "v2_full")[i % 2],
            latency_ms=100 + 37 * i,
            error="timeout" if i % 5 == 0 else None,
        )
        for i in range(40)
    ]
    record_events(events + [reaction(e["message_id"], "👍") for e in events[:10]])
    live = totals()
    assert DirtyHour.objects.count() > 0
    outcome = rollups.catch_up()
    assert outcome["remaining"] == 0 and DirtyHour.objects.count() == 0
    assert totals() == live
    assert live["v1"]["errors_by_code"] == {"timeout": 4}


def test_catch_up__run_twice__same_rollups():
    record_events([response(f"r{i}", ts=T0 + timedelta(minutes=i)) for i in range(5)])
    rollups.catch_up()
    first = list(HourlyRollup.objects.values("hour", "variant", "responses", "latency_hist"))
    rollups.mark_all_dirty()
    rollups.catch_up()
    assert (
        list(HourlyRollup.objects.values("hour", "variant", "responses", "latency_hist")) == first
    )


def test_totals__range_cutting_an_hour__counts_only_replies_inside():
    record_events([response(f"r{i}", ts=T0 + timedelta(minutes=10 * i)) for i in range(6)])
    rollups.catch_up()
    cut = rollups.totals_by_variant(
        "prompts_v2", T0 + timedelta(minutes=15), T0 + timedelta(minutes=45)
    )
    assert cut["v1"]["responses"] == 3  # minutes 20, 30, 40


def test_record_events__conversation__engagement_after_rollup():
    from metrics import selectors

    record_events(
        [
            response("a", conversation_id="c1", ts=T0),
            response("b", conversation_id="c1", ts=T0 + timedelta(minutes=4)),
            followup("m-a", "ok", ts=T0 + timedelta(minutes=1)),
            response("c", conversation_id="c2", ts=T0),
        ]
    )
    rollups.catch_up()
    stats = selectors.engagement("prompts_v2", T0 - timedelta(hours=1), T0 + timedelta(hours=1))[
        "v1"
    ]
    assert stats == {
        "conversations": 2,
        "messages_per_conversation": 2.0,
        "replies_per_conversation": 1.5,
        "avg_length_minutes": 2.0,
    }


def test_selectors__channels_and_traffic__since_filter():
    from metrics import selectors

    record_events(
        [
            response("a", channel_id="111", ts=T0),
            response("b", channel_id="222", ts=T0),
            response("c", channel_id="222", ts=T0 + timedelta(hours=2)),
            response("d", channel_id="333", ts=T0 - timedelta(days=3)),
        ]
    )
    assert selectors.known_channels("prompts_v2", T0 - timedelta(hours=1)) == ["111", "222"]
    assert selectors.traffic_by_channel("prompts_v2", T0 - timedelta(hours=1)) == {
        "111": 1,
        "222": 2,
    }


def test_hourly__rows_per_hour_and_variant__with_percentiles():
    from metrics import selectors

    record_events(
        [
            response("a", ts=T0, latency_ms=1000),
            response("b", ts=T0 + timedelta(hours=1), variant="v2_full"),
        ]
    )
    rows = selectors.hourly("prompts_v2", T0, T0 + timedelta(hours=2))
    assert [(r["hour"], r["variant"], r["responses"]) for r in rows] == [
        (T0, "v1", 1),
        (T0 + timedelta(hours=1), "v2_full", 1),
    ]
    assert abs(rows[0]["latency_ms"]["p50"] - 1000) < 25


def test_record_events__naive_now_free__utc_hour_bucket():
    record_events([response("a", ts=datetime(2026, 3, 2, 12, 59, 59, tzinfo=UTC))])
    assert ResponseEvent.objects.get().hour == datetime(2026, 3, 2, 12, tzinfo=UTC)


def test_update_rollups_command__without_broker__recomputes_dirty_hours():
    from io import StringIO

    from django.core.management import call_command

    record_events([response(f"c{i}", ts=T0 + timedelta(hours=i)) for i in range(3)])
    out = StringIO()
    call_command("update_rollups", stdout=out)
    assert "recomputed 3 hour(s)" in out.getvalue()
    assert DirtyHour.objects.count() == 0 and HourlyRollup.objects.count() == 3


def test_update_rollups_command__all__rebuilds_every_hour():
    from io import StringIO

    from django.core.management import call_command

    record_events([response("c1")])
    rollups.catch_up()
    HourlyRollup.objects.update(responses=99)  # a rollup gone wrong (e.g. restored from backup)
    call_command("update_rollups", "--all", stdout=StringIO())
    assert HourlyRollup.objects.get().responses == 1


def test_beat_schedule__rollup_catch_up__every_30_s_with_expiry():
    import metrics.tasks  # noqa: F401  (the beat entry is added when the tasks module loads)
    from selcontrol.celery import app

    entry = app.conf.beat_schedule["metrics-update-rollups"]
    assert entry["task"] == "metrics.tasks.update_rollups"
    assert entry["schedule"] == 30.0 and entry["options"]["expires"] < 30


@pytest.mark.parametrize(("start", "end"), [(5, 60), (0, 55), (35, 60), (0, 25), (20, 40)])
def test_totals__clean_hour_cut_anywhere__same_as_raw(start, end):
    events = [
        response(
            f"e{i}",
            ts=T0 + timedelta(minutes=5 * i, seconds=30),
            latency_ms=100 * (i + 1),
            error="timeout" if i % 4 == 0 else None,
        )
        for i in range(12)
    ]
    record_events(events + [reaction(e["message_id"], "👎") for e in events[::3]])
    rollups.catch_up()
    since, until = T0 + timedelta(minutes=start), T0 + timedelta(minutes=end)
    with_rollups = rollups.totals_by_variant("prompts_v2", since, until)
    raw = rollups.aggregate("prompts_v2", T0, since, until)
    assert with_rollups == raw


@pytest.mark.parametrize(("start", "end"), [(0, 60), (7, 60), (0, 31), (12, 48)])
def test_aggregate__one_statement_sql__same_as_the_orm_path(start, end):
    """PostgreSQL aggregates an hour in one SQL statement; the ORM path (SQLite's) must agree
    on every figure, for whole and partial hours alike."""
    from metrics.rollups import _aggregate_pg, _aggregate_portable

    events = [
        response(
            f"a{i}",
            ts=T0 + timedelta(minutes=i, seconds=7),
            variant="v2_full" if i % 3 else "v1",
            latency_ms=40.0 * (i + 1),
            error=("timeout", "rate_limited", None, None)[i % 4],
            cached_tokens=i % 50,
            cache_hit=(True, False, None)[i % 3],
            model="unknown/model" if i % 11 == 0 else "anthropic/claude-3.5-sonnet",
        )
        for i in range(60)
    ]
    feedback = []
    for i, e in enumerate(events[::2]):
        feedback.append(reaction(e["message_id"], ("👍", "👎", "🤔")[i % 3], user_id=f"u{i % 4}"))
        if i % 5 == 0:  # taken back later
            feedback.append(
                reaction(
                    e["message_id"],
                    ("👍", "👎", "🤔")[i % 3],
                    "remove",
                    user_id=f"u{i % 4}",
                    ts=T0 + timedelta(hours=2),
                )
            )
        if i % 3 == 0:
            feedback.append(followup(e["message_id"], "actually, no" if i % 2 else "thanks"))
    record_events(events + feedback)
    lo, hi = T0 + timedelta(minutes=start), T0 + timedelta(minutes=end)
    sql = _aggregate_pg("prompts_v2", lo, hi)
    orm = _aggregate_portable("prompts_v2", lo, hi)
    assert sql == orm
    assert set(sql) == {"v1", "v2_full"}
    assert sum(f["responses"] for f in sql.values()) == end - start
    assert all(
        f["reactions_positive"] + f["reactions_negative"] + f["reactions_neutral"]
        for f in sql.values()
    )
