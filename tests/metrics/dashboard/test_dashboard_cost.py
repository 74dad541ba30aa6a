"""Money spent in a range (issue 16, item 2): per day and per month divide by the days that had
data, counted as metrics.dashboard.series.day_coverage defines them; every figure is checked
against the raw events' arithmetic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum
from django.urls import reverse

from metrics.models import ResponseEvent
from tests.metrics.conftest import response
from tests.metrics.dashboard.dashboard_traffic import load

NOW = datetime(2026, 3, 20, 10, 30, tzinfo=UTC)
FIRST = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)  # the rollout's first reply: 15:05 on Mar 7
QUIET = datetime(2026, 3, 12, tzinfo=UTC)  # a whole day without a reply
# Mar 7 from 15:00 (9 h), Mar 8-19 without Mar 12 (11 days), Mar 20 until 10:30 (10.5 h)
DAYS_WITH_DATA = 11 + (9 + 10.5) / 24


@pytest.fixture
def fortnight(db, rollout):
    """One v1 reply every hour (and a v2_full reply every third hour) from Mar 7 15:05 to
    Mar 20 10:05, none on Mar 12, through the real intake and rollups."""
    events, hour = [], FIRST
    while hour < NOW:
        if not QUIET <= hour < QUIET + timedelta(days=1):
            ts = hour + timedelta(minutes=5)
            events.append(response(ts=ts, variant="v1", input_tokens=400 + hour.hour))
            if hour.hour % 3 == 0:
                events.append(response(ts=ts, variant="v2_full", input_tokens=1500))
        hour += timedelta(hours=1)
    with time_machine.travel(NOW, tick=False):
        load(events, now=NOW)
        yield


def raw_spent(since: datetime, until: datetime) -> float:
    total = ResponseEvent.objects.filter(
        rollout_key="prompts_v2", ts__gte=since, ts__lt=until
    ).aggregate(s=Sum("cost_usd"))["s"]
    return float(total or Decimal(0))


def cost_json(client, **query) -> dict:
    with time_machine.travel(NOW, tick=False):
        answer = client.get(reverse("metrics:cost-data", args=["prompts_v2", "json"]), query)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_cost_json__30_days_holding_13_days_of_data__per_day_divides_by_the_days_with_data(
    viewer_client, fortnight
):
    spent = cost_json(viewer_client, range="30d")["range"]
    until = datetime(2026, 3, 20, 11, tzinfo=UTC)
    assert spent["since"] == (until - timedelta(days=30)).isoformat()
    assert spent["until"] == until.isoformat()
    assert spent["spent_usd"] == pytest.approx(
        raw_spent(until - timedelta(days=30), until), abs=1e-6
    )
    assert spent["days_with_data"] == pytest.approx(DAYS_WITH_DATA, abs=1e-4)
    assert spent["spent_per_day_usd"] == pytest.approx(
        spent["spent_usd"] / DAYS_WITH_DATA, abs=1e-6
    )
    assert spent["spent_per_month_usd"] == pytest.approx(spent["spent_per_day_usd"] * 30, abs=1e-4)
    hours = {d["day"][:10]: d["hours_counted"] for d in spent["days"]}
    assert hours["2026-03-07"] == 9 and hours["2026-03-08"] == 24
    assert hours["2026-03-20"] == 10.5 and "2026-03-12" not in hours


def test_cost_json__24h__the_current_hour_counts_as_far_as_it_has_gone(viewer_client, fortnight):
    spent = cost_json(viewer_client, range="24h")["range"]
    until = datetime(2026, 3, 20, 11, tzinfo=UTC)
    assert spent["spent_usd"] == pytest.approx(
        raw_spent(until - timedelta(hours=24), until), abs=1e-6
    )
    assert spent["days_with_data"] == pytest.approx(23.5 / 24, abs=1e-4)
    assert spent["spent_per_day_usd"] == pytest.approx(spent["spent_usd"] * 24 / 23.5, abs=1e-6)


def test_cost_json__custom_range_in_the_past__whole_days_of_data(viewer_client, fortnight):
    spent = cost_json(viewer_client, range="custom", start="2026-03-10", end="2026-03-14")["range"]
    since, until = datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC)
    assert spent["spent_usd"] == pytest.approx(raw_spent(since, until), abs=1e-6)
    assert spent["days_with_data"] == pytest.approx(4)  # 10, 11, 13, 14; not the quiet 12th


def test_cost_json__range_without_replies__no_per_day_figure(viewer_client, fortnight):
    spent = cost_json(viewer_client, range="custom", start="2026-02-01", end="2026-02-03")["range"]
    assert spent["spent_usd"] == 0 and spent["days_with_data"] == 0
    assert spent["spent_per_day_usd"] is None


def test_cost_json__bad_range__400_names_the_field(viewer_client, rollout):
    answer = viewer_client.get(
        reverse("metrics:cost-data", args=["prompts_v2", "json"]), {"range": "90d"}
    )
    assert answer.status_code == 400
    assert "range must be one of" in answer.json()["error"]


def test_dashboard__30_days__cost_line_matches_the_raw_events(viewer_client, fortnight):
    with time_machine.travel(NOW, tick=False):
        html = viewer_client.get(
            reverse("metrics:dashboard", args=["prompts_v2"]), {"range": "30d"}
        )
    text = re.sub(r"<[^>]+>", "", html.content.decode())
    until = datetime(2026, 3, 20, 11, tzinfo=UTC)
    spent = raw_spent(until - timedelta(days=30), until)
    per_day = spent / DAYS_WITH_DATA
    assert (
        f"${spent:.2f} over {DAYS_WITH_DATA:.1f} days with data · ${per_day:.2f}/day · "
        f"${per_day * 30:.0f}/month at this rate"
    ) in text


def test_chart_json__cost_per_day__partial_first_and_last_days_marked(viewer_client, fortnight):
    with time_machine.travel(NOW, tick=False):
        body = viewer_client.get(
            reverse("metrics:chart-data", args=["prompts_v2", "cost_per_day", "json"]),
            {"range": "30d"},
        ).json()
    by_day: dict[str, list[dict]] = {}
    for row in body["rows"]:
        by_day.setdefault(row["period"][:10], []).append(row)
    assert {r["hours_counted"] for r in by_day["2026-03-07"]} == {9}
    assert all(r["partial_day"] for r in by_day["2026-03-07"] + by_day["2026-03-20"])
    assert not any(r["partial_day"] for r in by_day["2026-03-08"])
    for day, rows in by_day.items():
        since = datetime.fromisoformat(day).replace(tzinfo=UTC)
        assert sum(r["cost_usd"] for r in rows) == pytest.approx(
            raw_spent(since, since + timedelta(days=1)), abs=1e-3
        )
