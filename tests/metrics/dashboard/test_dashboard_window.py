"""metrics.dashboard.series' Window read from daily rollups for whole days and hourly rows for the
rest (issue 16: the speed goal) gives the same figures as the hours themselves, and the summary
API; the engagement KPI charts (item 13) match the summary API; the comparison table's relative
change agrees with its two values (item 8)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from metrics import histogram, rollups
from metrics.dashboard import series
from metrics.ingest.intake import record_events
from tests.metrics.conftest import iso, response
from tests.metrics.dashboard.dashboard_traffic import V1, V2, events_for, load
from tests.metrics.dashboard.test_dashboard_cost import NOW, fortnight  # noqa: F401  (fixture)

SUMMED = (*rollups.COUNT_FIELDS, "latency_sum")


def _window(rollout, granularity: str, days: int = 30) -> series.Window:
    until = rollups.hour_of(NOW) + timedelta(hours=1)
    return series.load_window(rollout, until - timedelta(days=days), until, granularity, now=NOW)


def _sum_hours(since: datetime, until: datetime) -> dict[tuple[datetime, str], dict]:
    """The HourlyRollup rows of the range summed per UTC day, read through the ORM."""
    from metrics.models import HourlyRollup

    out: dict[tuple[datetime, str], dict] = {}
    for row in HourlyRollup.objects.filter(hour__gte=since, hour__lt=until):
        f = rollups.figures_of_rollup(row)
        f["cost_usd"] = float(f["cost_usd"])
        f["latency_hist"] = {str(k): n for k, n in f["latency_hist"].items()}
        slot = out.setdefault((rollups.day_of(row.hour), row.variant), series._empty())
        series._add(slot, f)
    return out


def test_window__by_day__whole_days_from_daily_rollups_equal_their_hours(rollout, fortnight):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        by_hour, by_day = _window(rollout, "hour"), _window(rollout, "day")
    expected = _sum_hours(by_hour.since, by_hour.until)  # every hourly row, summed per day
    assert set(by_day.days) == set(by_hour.days) == set(expected)
    for key, figures in expected.items():
        for window in (by_day, by_hour):
            got = window.days[key]
            assert {f: got[f] for f in SUMMED} == {f: figures[f] for f in SUMMED}, key
            assert got["cost_usd"] == pytest.approx(figures["cost_usd"])
            assert {k: n for k, n in got["latency_hist"].items() if n} == {
                k: n for k, n in figures["latency_hist"].items() if n
            }
    # by day, only the two edge days are read hour by hour (Feb 18 has no replies)
    assert {rollups.day_of(h) for h, _ in by_day.hours} == {datetime(2026, 3, 20, tzinfo=UTC)}
    assert by_day.totals().keys() == by_hour.totals().keys()
    for variant, totals in by_hour.totals().items():
        assert by_day.totals()[variant]["responses"] == totals["responses"]
    # the cluster figures of the means: five light columns by day, the full rows by hour
    for pick in (lambda f: f["input_tokens"], lambda f: f["cost_usd"]):
        day, hour = by_day.clusters("v1", pick), by_hour.clusters("v1", pick)
        assert [n for n, _ in day] == [n for n, _ in hour]
        assert [y for _, y in day] == pytest.approx([y for _, y in hour])


def test_window__dirty_hour__counted_from_raw_events_in_both_granularities(rollout, fortnight):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        before = _window(rollout, "day").totals()["v1"]["responses"]
        record_events([response(ts=NOW - timedelta(days=3, minutes=10)) for _ in range(4)])
        for granularity in ("day", "hour"):
            window = _window(rollout, granularity)
            assert window.totals()["v1"]["responses"] == before + 4
            assert sum(c[0] for c in window.clusters("v1", lambda f: 0)) == before + 4


@pytest.mark.parametrize("seed", range(20))
def test_percentiles__ordered_histogram__as_metrics_histogram_gives_them(seed):
    rng = random.Random(seed)
    keys = sorted(rng.sample(range(1, 320), rng.randrange(1, 60)))
    hist = {str(k): rng.randrange(1, 50) for k in keys}
    assert series._percentiles(hist) == {
        name: round(value, 1) for name, value in histogram.percentiles(hist).items()
    }


@pytest.fixture
def conversations(db, rollout):
    """Six hours of v1 and v2_full replies with conversations of three replies and their
    follow-ups, through the real intake and rollups (ConversationStat kept by the rollup task)."""
    start = datetime(2026, 3, 2, 6, tzinfo=UTC)
    with time_machine.travel(start + timedelta(hours=8), tick=False):
        load(
            events_for("v1", V1, start, 6, 9, seed=3)
            + events_for("v2_full", V2, start, 6, 6, seed=3)
        )
    return start


def test_chart_json__conversation_charts__add_up_to_the_summary_api(
    viewer_client, reader, conversations
):
    query = {"range": "custom", "start": "2026-03-02", "end": "2026-03-02"}
    summary = reader.get(
        "/api/v1/rollouts/prompts_v2/summary",
        since=iso(conversations.replace(hour=0)),
        until=iso(conversations.replace(hour=0) + timedelta(days=1)),
    ).json()["variants"]
    messages = viewer_client.get(
        reverse("metrics:chart-data", args=["prompts_v2", "conversation_messages", "json"]),
        query | {"granularity": "hour"},
    ).json()["rows"]
    length = viewer_client.get(
        reverse("metrics:chart-data", args=["prompts_v2", "conversation_length", "json"]),
        query | {"granularity": "hour"},
    ).json()["rows"]
    assert len(messages) == len(length) == 12  # six hours, two variants
    for variant in ("v1", "v2_full"):
        mine = [r for r in messages if r["variant"] == variant]
        engagement = summary[variant]["engagement"]
        n = sum(r["conversations"] for r in mine)
        assert n == engagement["conversations"]
        assert sum(r["messages"] for r in mine) / n == pytest.approx(
            engagement["messages_per_conversation"], abs=0.005
        )
        minutes = sum(
            r["avg_length_minutes"] * r["conversations"] for r in length if r["variant"] == variant
        )
        assert minutes / n == pytest.approx(engagement["avg_length_minutes"], abs=0.05)
        for row in mine:
            assert row["messages_per_conversation"] == pytest.approx(
                row["messages"] / row["conversations"], abs=1e-3
            )


def test_dashboard__engagement_kpi__charted_beside_follow_ups(viewer_client, conversations):
    html = viewer_client.get(
        reverse("metrics:dashboard", args=["prompts_v2"]),
        {"range": "custom", "start": "2026-03-02", "end": "2026-03-02"},
    ).content.decode()
    assert 'id="chart-conversation_messages"' in html and "Messages per conversation" in html
    assert 'id="chart-conversation_length"' in html and "Conversation length" in html


def test_dashboard__small_samples__relative_change_agrees_with_the_two_values(
    viewer_client, rollout
):
    """6 of 6 v1 replies and 3 of 3 v2 replies were errors: 0.0%, not the -5.8% the
    continuity correction made of it; 2 of 6 v1 timeouts against 0 of 3 on v2: -100%, not -65%."""
    t0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
    events = [
        response(ts=t0 + timedelta(minutes=i), variant=v, error="timeout" if i < k else "x")
        for v, n, k in (("v1", 6, 2), ("v2_full", 3, 0))
        for i in range(n)
    ]
    with time_machine.travel(t0 + timedelta(hours=2), tick=False):
        record_events(events)
        html = viewer_client.get(
            reverse("metrics:dashboard", args=["prompts_v2"]),
            {"range": "custom", "start": "2026-03-02", "end": "2026-03-02"},
        ).content.decode()

    def cells(metric: str) -> list[str]:
        row = re.search(rf'<tr id="cmp-{metric}".*?</tr>', html, re.S).group(0)
        return [
            re.sub(r"<[^>]+>", " ", c).split()[0] for c in re.findall(r"<td.*?</td>", row, re.S)
        ]

    assert cells("error_rate")[:3] == ["100.0%", "100.0%", "0.0%"]
    assert cells("timeout_rate")[:3] == ["33.3%", "0.0%", "−100.0%"]


def test_window__by_hour_twice__the_second_read_draws_the_same_figures(rollout, fortnight):  # noqa: F811
    """Whole days' hours come slim from a cache by computed_at the second time: same rows."""
    with time_machine.travel(NOW, tick=False):
        first = series.figure_rows(_window(rollout, "hour"), "latency")
        first = [dict(r) for r in first]
        again = series.figure_rows(_window(rollout, "hour"), "latency")
    assert [dict(r) for r in again] == first
    assert len(first) > 24 * 10


def test_window__hour_recomputed__the_cache_serves_the_new_figures(rollout, fortnight):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        hour = datetime(2026, 3, 10, 12, tzinfo=UTC)
        before = _window(rollout, "hour")
        n = before.hours[(hour, "v1")]["responses"]
        record_events([response(ts=hour + timedelta(minutes=30)) for _ in range(3)])
        rollups.catch_up()
        after = _window(rollout, "hour")
    assert after.hours[(hour, "v1")]["responses"] == n + 3
    rows = {(r["period"], r["variant"]): r for r in series.figure_rows(after, "responses")}
    assert rows[(hour, "v1")]["responses"] == n + 3


def test_window__portable_path_used_on_sqlite__same_figures(rollout, fortnight, monkeypatch):  # noqa: F811
    """`make run` serves from SQLite: the ORM path (daily rows by day__in) gives what the SQL
    path gives (it raised IndexError reading the daily rows)."""
    with time_machine.travel(NOW, tick=False):
        expected = {g: _window(rollout, g) for g in ("day", "hour")}
        monkeypatch.setattr(rollups, "is_postgres", lambda: False)
        for granularity, sql in expected.items():
            orm = _window(rollout, granularity)
            assert orm.totals().keys() == sql.totals().keys()
            for variant, totals in sql.totals().items():
                got = orm.totals()[variant]
                assert got["responses"] == totals["responses"]
                assert got["cost_usd"] == pytest.approx(totals["cost_usd"])
                assert got["latency_hist"] == totals["latency_hist"]
            assert series.figure_rows(orm, "latency") == series.figure_rows(sql, "latency")


def test_range_line__named_range__ends_now_not_at_the_end_of_the_current_hour(
    rollout, viewer_client
):
    with time_machine.travel(NOW, tick=False):  # 10:30: the 24 h range is [Mar 19 11:00, 11:00)
        body = viewer_client.get(f"/metrics/{rollout.key}/?range=24h").content.decode()
        past = viewer_client.get(
            f"/metrics/{rollout.key}/?range=custom&start=2026-03-01&end=2026-03-09"
        ).content.decode()
    line = re.sub(r"\s+", " ", re.search(r'id="dash-range"[^>]*>(.*?)</p>', body, re.S)[1])
    assert "2026-03-19 11:00 to now, 2026-03-20 10:30 UTC" in line
    assert "11:00 UTC" not in line
    line = re.sub(r"\s+", " ", re.search(r'id="dash-range"[^>]*>(.*?)</p>', past, re.S)[1])
    assert "2026-03-01 00:00 to 2026-03-10 00:00 UTC" in line and "now" not in line
