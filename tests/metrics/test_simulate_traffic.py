"""manage.py simulate_traffic: through the real ingest path, deterministic, true to the guide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from metrics import selectors
from metrics.models import DirtyHour, ResponseEvent
from rollout.models import AuditEntry, Rollout

NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)


def run(*args) -> str:
    out = StringIO()
    call_command("simulate_traffic", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_simulate_traffic__demo__phases_followed_and_v2_costs_about_3_4x():
    with time_machine.travel(NOW, tick=False):
        output = run("--demo", "--per-day", "400", "--channels", "200")
    rollout = Rollout.objects.get(key="prompts_v2")
    assert (rollout.current_phase.name, rollout.percentage) == ("Beta", 20)
    assert AuditEntry.objects.filter(action="phase.change", actor="simulate_traffic").count() == 2
    first_v2 = ResponseEvent.objects.exclude(variant="v1").order_by("ts").first().ts
    assert NOW - timedelta(days=7) <= first_v2 < NOW - timedelta(days=6)
    summary = selectors.summary("prompts_v2", NOW - timedelta(days=5), NOW)["variants"]
    v1, v2 = summary["v1"], summary["v2_full"]
    ratio = (v2["input_tokens"] / v2["responses"]) / (v1["input_tokens"] / v1["responses"])
    assert 3.0 < ratio < 3.8
    assert v2["responses"] / (v1["responses"] + v2["responses"]) == pytest.approx(0.2, abs=0.1)
    assert DirtyHour.objects.count() == 0
    assert "accepted" in output


@pytest.mark.django_db
def test_simulate_traffic__run_twice__adds_nothing():
    args = (
        "--days",
        "1",
        "--per-day",
        "800",
        "--channels",
        "50",
        "--start",
        "2026-03-01T00:00:00Z",
    )
    run(*args)
    count = ResponseEvent.objects.count()
    assert 600 < count < 1000
    assert " 0 events accepted" in run(*args)
    assert ResponseEvent.objects.count() == count


@pytest.mark.django_db
def test_simulate_traffic__daily_cycle__evening_busier_than_morning():
    run("--days", "2", "--per-day", "2000", "--channels", "50", "--start", "2026-03-02T00:00:00Z")
    by_hour = {h: 0 for h in range(24)}
    for ts in ResponseEvent.objects.values_list("ts", flat=True):
        by_hour[ts.hour] += 1
    assert by_hour[20] > 3 * by_hour[8]


def test_simulate_traffic__through_http__counted_like_in_process(
    committed, live_server, make_token
):
    token = make_token("events:write", name="sim")
    args = (
        "--days",
        "0.25",
        "--per-day",
        "1200",
        "--channels",
        "30",
        "--start",
        "2026-03-01T00:00:00Z",
    )
    output = run(*args, "--url", live_server.url, "--token", token)
    assert ResponseEvent.objects.count() > 200
    accepted = int(output.split(":")[1].split()[0])
    assert accepted >= ResponseEvent.objects.count()
    assert " 0 events accepted" in run(*args, "--url", live_server.url, "--token", token)
