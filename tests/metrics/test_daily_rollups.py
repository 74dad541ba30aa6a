"""Daily rollups: each day's rows are the sum of its hourly rows, and long summaries read them."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps

from metrics import rollups
from metrics.ingest.intake import record_events
from metrics.models import DailyRollup, DirtyHour, HourlyRollup, ResponseEvent

from .conftest import T0, followup, reaction, response

pytestmark = pytest.mark.django_db

DAY0 = T0.replace(hour=0)


def _traffic(days: int = 5) -> None:
    """Replies every 50 minutes over several days (both variants, some errors), with feedback;
    day 2 has no traffic at all."""
    events = []
    for i in range(days * 24 * 60 // 50):
        ts = DAY0 + timedelta(minutes=50 * i + 3)
        if (ts - DAY0).days == 2:
            continue
        e = response(
            f"d{i}",
            ts=ts,
            variant="v2_full" if i % 3 == 0 else "v1",
            latency_ms=90.0 + 37 * (i % 29),
            error="timeout" if i % 7 == 0 else None,
            input_tokens=400 + i,
        )
        events.append(e)
        if i % 4 == 0:
            events.append(
                reaction(e["message_id"], "👍" if i % 8 else "👎", ts=ts + timedelta(minutes=1))
            )
        if i % 5 == 0:
            events.append(
                followup(
                    e["message_id"],
                    "actually, no" if i % 10 else "thanks",
                    ts=ts + timedelta(minutes=2),
                )
            )
    record_events(events)
    rollups.catch_up()


def _raw(since, until) -> dict:
    return rollups._aggregate_pg("prompts_v2", since, until)


def _day_sums(day) -> dict:
    total: dict = {}
    for row in HourlyRollup.objects.filter(
        rollout_key="prompts_v2", hour__gte=day, hour__lt=day + timedelta(days=1)
    ):
        rollups.add_figures(
            total.setdefault(row.variant, rollups.empty_figures()), rollups.figures_of_rollup(row)
        )
    return total


def test_daily_rollups__each_day__is_the_sum_of_its_hours():
    _traffic()
    days = sorted(set(DailyRollup.objects.values_list("day", flat=True)))
    assert days == [DAY0 + timedelta(days=d) for d in (0, 1, 3, 4)]  # day 2 had no traffic
    for day in days:
        stored = {
            row.variant: rollups.figures_of_rollup(row)
            for row in DailyRollup.objects.filter(day=day)
        }
        assert stored == _day_sums(day)
        assert stored == _raw(day, day + timedelta(days=1))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (timedelta(0), timedelta(days=5)),  # whole days only
        (timedelta(hours=5, minutes=17), timedelta(days=4, hours=7, minutes=41)),  # partial ends
        (timedelta(hours=23, minutes=59), timedelta(days=3, minutes=1)),  # just across day lines
        (timedelta(days=1, hours=2), timedelta(days=1, hours=20)),  # inside one day
    ],
)
def test_totals__range_over_days__same_as_raw(start, end):
    _traffic()
    since, until = DAY0 + start, DAY0 + end
    assert rollups.totals_by_variant("prompts_v2", since, until) == _raw(since, until)


def test_totals__dirty_hour_inside_a_whole_day__that_day_read_from_hours_and_raw():
    _traffic()
    ts = DAY0 + timedelta(days=1, hours=9, minutes=30)
    record_events(
        [response("fresh", ts=ts, variant="v1", latency_ms=5000.0, error="overloaded")],
        schedule=False,
    )
    assert DirtyHour.objects.count() == 1  # not rolled up yet: the day row is stale
    since, until = DAY0, DAY0 + timedelta(days=5)
    assert rollups.totals_by_variant("prompts_v2", since, until) == _raw(since, until)
    rollups.catch_up()
    assert rollups.totals_by_variant("prompts_v2", since, until) == _raw(since, until)
    assert {
        r.variant: rollups.figures_of_rollup(r)
        for r in DailyRollup.objects.filter(day=DAY0 + timedelta(days=1))
    } == _day_sums(DAY0 + timedelta(days=1))


def test_daily_rollups__variant_gone_from_a_day__its_day_row_goes_too():
    record_events([response("only", ts=DAY0 + timedelta(hours=3), variant="v2_full")])
    rollups.catch_up()
    assert list(DailyRollup.objects.values_list("variant", flat=True)) == ["v2_full"]
    ResponseEvent.objects.all().delete()  # e.g. an operator purged a test rollout's rows
    rollups.mark_all_dirty("prompts_v2")
    rollups.catch_up()
    assert not HourlyRollup.objects.exists() and not DailyRollup.objects.exists()


def test_migration__builds_day_rows_from_stored_hourly_rows():
    _traffic(days=3)
    expected = {(r.day, r.variant): rollups.figures_of_rollup(r) for r in DailyRollup.objects.all()}
    DailyRollup.objects.all().delete()
    migration = importlib.import_module("metrics.migrations.0006_daily_rollups")
    migration.build_daily_rollups(apps, None)
    assert {
        (r.day, r.variant): rollups.figures_of_rollup(r) for r in DailyRollup.objects.all()
    } == expected
    assert len(expected) == 4  # days 0 and 1, two variants each
