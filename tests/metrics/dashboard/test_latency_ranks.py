"""HourlyRollup.latency_ranks (issue 16: the dashboard's speed goal): the p50/p95/p99 buckets
stored beside each hourly histogram, written by the rollup job and derived for stored rows by
migration 0010; a 30-day chart by hour drawn from them shows exactly what the histograms give."""

from __future__ import annotations

import importlib
import random
from datetime import timedelta

import pytest
import time_machine
from django.apps import apps

from metrics import histogram, rollups
from metrics.dashboard import series
from metrics.ingest.intake import record_events
from metrics.models import HourlyRollup
from tests.metrics.conftest import response

from .test_dashboard_cost import NOW

pytestmark = pytest.mark.django_db

UNTIL = rollups.hour_of(NOW) + timedelta(hours=1)
SINCE = UNTIL - timedelta(days=30)


@pytest.fixture
def spread(rollout):
    """Six days of replies with spread latencies (a few per hour, both variants, slow tails),
    through the real intake and rollup job."""
    rng = random.Random(10)
    events = []
    hour = rollups.hour_of(NOW) - timedelta(days=6)
    while hour < NOW - timedelta(hours=1):
        for i in range(rng.randint(1, 9)):
            events.append(
                response(
                    ts=hour + timedelta(minutes=3 + 5 * i),
                    variant="v2_full" if i % 3 == 0 else "v1",
                    latency_ms=rng.lognormvariate(7, 0.8) if i % 7 else 30_000.0,
                )
            )
        hour += timedelta(hours=1)
    with time_machine.travel(NOW, tick=False):
        record_events(events)
        rollups.catch_up()
        yield


def _figure_rows(rollout, granularity: str = "hour") -> dict[str, list[dict]]:
    series._SLIM_CACHE.clear()
    with time_machine.travel(NOW, tick=False):
        window = series.load_window(rollout, SINCE, UNTIL, granularity, now=NOW)
        return {key: [dict(r) for r in series.figure_rows(window, key)] for key in series.CHARTS}


def test_recompute_hour__stores_the_ranks_of_the_hours_histogram_stamped(spread):
    rows = list(HourlyRollup.objects.all())
    assert len(rows) > 200
    for row in rows:
        micros = rollups.epoch_micros(row.computed_at)
        assert row.latency_ranks == f"{histogram.ranks(row.latency_hist)}@{micros}"
    assert len({row.latency_ranks.split("@")[0] for row in rows}) > 20  # the hours differ


def test_migration__derives_the_ranks_recompute_hour_writes(spread):
    expected = dict(HourlyRollup.objects.values_list("id", "latency_ranks"))
    HourlyRollup.objects.update(latency_ranks=None)
    migration = importlib.import_module("metrics.migrations.0010_hourly_latency_ranks")
    migration.derive_latency_ranks(apps, None)
    assert dict(HourlyRollup.objects.values_list("id", "latency_ranks")) == expected


@pytest.mark.parametrize("portable", [False, True], ids=["postgresql", "sqlite path"])
def test_window_by_hour__drawn_from_ranks__equals_drawn_from_histograms(
    rollout, spread, monkeypatch, portable
):
    if portable:
        monkeypatch.setattr(rollups, "is_postgres", lambda: False)
    from_ranks = _figure_rows(rollout)
    HourlyRollup.objects.update(latency_ranks=None)  # rows before migration 0010: decoded
    from_histograms = _figure_rows(rollout)
    assert from_ranks == from_histograms
    latency = [r for r in from_ranks["latency"] if r["p95_ms"] is not None]
    assert len(latency) > 200 and len({r["p99_ms"] for r in latency}) > 10


def test_window_by_hour__ranked_rows__their_histograms_are_not_what_is_drawn(rollout, spread):
    """A whole day's hour is drawn from its stored ranks: blanking its histogram in the
    database changes nothing on the chart (the histogram is not read); a partial day's hour is
    summed into its day, so its histogram still counts."""
    before = _figure_rows(rollout)
    whole_day_hour = rollups.day_of(NOW) - timedelta(days=2) + timedelta(hours=5)
    HourlyRollup.objects.filter(hour=whole_day_hour).update(latency_hist={})
    after = _figure_rows(rollout)
    assert after["latency"] == before["latency"]
    assert any(r["period"] == whole_day_hour and r["p50_ms"] for r in after["latency"])


@pytest.mark.parametrize("portable", [False, True], ids=["postgresql", "sqlite path"])
def test_window_by_hour__row_rewritten_without_ranks__drawn_from_its_histogram(
    rollout, spread, monkeypatch, portable
):
    """A worker on an older release rewrites a row's histogram and computed_at but not its
    ranks (during a deploy): the stale ranks are not used, the new histogram is drawn."""
    if portable:
        monkeypatch.setattr(rollups, "is_postgres", lambda: False)
    hour = rollups.day_of(NOW) - timedelta(days=2) + timedelta(hours=7)
    before = {r["variant"]: r for r in _figure_rows(rollout)["latency"] if r["period"] == hour}
    HourlyRollup.objects.filter(hour=hour).update(
        latency_hist={"200": 3}, computed_at=NOW + timedelta(seconds=1)
    )
    after = {r["variant"]: r for r in _figure_rows(rollout)["latency"] if r["period"] == hour}
    value = round(histogram.representative(200), 1)
    for variant in before:
        assert before[variant]["p50_ms"] != value
        assert after[variant]["p50_ms"] == after[variant]["p99_ms"] == value
