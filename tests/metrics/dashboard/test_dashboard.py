"""The comparison dashboard over real intake and rollups: pages, fragments, JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from metrics import rollups
from rollout import services
from tests.conftest import SYSTEM
from tests.metrics.dashboard.dashboard_traffic import V1, V2, events_for, load

HOURS = 26


@pytest.fixture(scope="module")
def _traffic_data(django_db_setup, django_db_blocker):
    """26 hours of v1 and v2_full replies ending at the current hour, through the real intake
    and rollups, a phase change 10 hours ago and a rollback 2 hours ago (audit rows written then,
    through the services). Loaded once for the module (committed), removed afterwards."""
    from metrics.models import (
        ChannelDailyRollup,
        ChannelHourlyRollup,
        ConversationStat,
        DailyRollup,
        DirtyHour,
        FollowupEvent,
        HourlyRollup,
        ReactionEvent,
        ResponseEvent,
    )
    from rollout.models import AuditEntry, Rollout

    with django_db_blocker.unblock():
        rollout = Rollout.objects.get(key="prompts_v2")
        saved = {
            f: getattr(rollout, f)
            for f in ("enabled", "percentage", "current_phase_id", "phase_started_at", "revision")
        }
        first_audit = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
        now = timezone.now()
        start = rollups.hour_of(now) - timedelta(hours=HOURS - 1)
        load(
            events_for("v1", V1, start, HOURS, 6) + events_for("v2_full", V2, start, HOURS, 3),
            now=now,
        )
        with time_machine.travel(now - timedelta(hours=10), tick=False):
            services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="start alpha")
        with time_machine.travel(now - timedelta(hours=2), tick=False):
            services.engage_kill_switch(rollout, actor=SYSTEM, reason="errors spiking")
        try:
            yield
        finally:
            for model in (
                ReactionEvent,
                FollowupEvent,
                ResponseEvent,
                HourlyRollup,
                DailyRollup,
                ChannelHourlyRollup,
                ChannelDailyRollup,
                DirtyHour,
                ConversationStat,
            ):
                model.objects.all().delete()
            AuditEntry.objects.filter(id__gt=first_audit)._raw_delete(AuditEntry.objects.db)
            Rollout.objects.filter(pk=rollout.pk).update(**saved)


@pytest.fixture
def traffic(_traffic_data, rollout):
    rollout.refresh_from_db()
    return rollout


def url(name, *args, **query):
    from urllib.parse import urlencode

    return reverse(f"metrics:{name}", args=args) + (f"?{urlencode(query)}" if query else "")


def test_dashboard__viewer__renders_every_chart(viewer_client, traffic):
    response = viewer_client.get(url("dashboard", "prompts_v2"))
    assert response.status_code == 200
    html = response.content.decode()
    for key in (
        "responses",
        "errors",
        "latency",
        "tokens",
        "cost_per_reply",
        "cost_per_day",
        "sentiment",
        "corrections",
        "engagement",
        "cache",
        "reviews",
    ):
        assert f'id="figure-{key}"' in html


def test_dashboard__anonymous__redirected_to_login(client, traffic):
    response = client.get(url("dashboard", "prompts_v2"))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_dashboard__unknown_rollout__404(viewer_client, db):
    assert viewer_client.get(url("dashboard", "nope")).status_code == 404


def test_dashboard_home__logged_in__redirects_to_default_rollout(viewer_client, rollout):
    response = viewer_client.get(url("home"))
    assert response["Location"] == url("dashboard", "prompts_v2")


def test_dashboard__htmx_request__answers_the_body_fragment_only(viewer_client, traffic):
    response = viewer_client.get(
        url("dashboard", "prompts_v2", range="7d"), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'data-range="7d"' in html


def test_dashboard__bad_range__422_names_the_field(viewer_client, traffic):
    response = viewer_client.get(url("dashboard", "prompts_v2", range="1y"))
    assert response.status_code == 422
    assert "range must be one of 24h, 7d, 30d or custom" in response.content.decode()


def test_dashboard__custom_range__uses_the_dates(viewer_client, traffic):
    day = timezone.now().date()
    response = viewer_client.get(
        url("dashboard", "prompts_v2", range="custom", start=str(day), end=str(day))
    )
    assert response.status_code == 200
    assert f"{day:%Y-%m-%d} 00:00 to " in response.content.decode()


def test_dashboard__30_days__reads_a_bounded_number_of_queries(
    viewer_client, traffic, django_assert_max_num_queries
):
    # 20, and 2 for the guardrail panel's success criteria (the last kill-switch release and the
    # figures over the rules' evidence window: metrics.guardrails.criteria)
    with django_assert_max_num_queries(22):
        response = viewer_client.get(url("dashboard", "prompts_v2", range="30d"))
    assert response.status_code == 200


def test_chart_json__24h__rows_are_the_rollup_figures(viewer_client, traffic):
    body = viewer_client.get(url("chart-data", "prompts_v2", "responses", "json")).json()
    totals = {}
    for row in body["rows"]:
        totals[row["variant"]] = totals.get(row["variant"], 0) + row["responses"]
    assert totals == {"v1": 24 * 6, "v2_full": 24 * 3}
    assert body["columns"] == ["period", "variant", "responses"]
    assert len(body["rows"]) == 48


def test_chart_json__markers__drawn_as_lines_and_labels(viewer_client, traffic):
    body = viewer_client.get(url("chart-data", "prompts_v2", "latency", "json")).json()
    labels = [a["text"] for a in body["figure"]["layout"]["annotations"]]
    assert [m["kind"] for m in body["markers"]] == ["phase", "rollback"]
    assert labels == ["Alpha 5%", "Rollback"]  # short labels; the full ones in the hover text
    assert [m["label"] for m in body["markers"]] == ["Phase: Alpha 5%", "Rollback (kill switch on)"]
    assert len(body["figure"]["layout"]["shapes"]) == 2


def test_chart_csv__errors__header_and_one_row_per_hour_and_variant(viewer_client, traffic):
    response = viewer_client.get(url("chart-data", "prompts_v2", "errors", "csv", range="7d"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "period",
        "variant",
        "responses",
        "errors",
        "timeouts",
        "error_rate",
        "timeout_rate",
    ]
    assert len(rows) == 1 + HOURS * 2
    assert rows[1][0].endswith("Z")


def test_chart_data__unknown_chart__404_names_it(viewer_client, traffic):
    response = viewer_client.get(url("chart-data", "prompts_v2", "nope", "json"))
    assert response.status_code == 404
    assert "chart must be one of" in response.json()["error"]


def test_chart_data__bad_granularity__400_names_the_field(viewer_client, traffic):
    response = viewer_client.get(
        url("chart-data", "prompts_v2", "latency", "json", granularity="week")
    )
    assert response.status_code == 400
    assert response.json() == {"error": "granularity must be auto, hour or day; got 'week'."}


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        (
            {"range": "week", "granularity": "week", "compare": "v9"},
            "range must be one of 24h, 7d, 30d or custom; got 'week'.",
        ),
        (
            {"range": "custom", "start": "2026-03-01", "granularity": "week"},
            "A custom range needs both start and end (YYYY-MM-DD).",
        ),
        (
            {"range": "custom", "start": "March", "end": "May", "compare": "v9"},
            "start 'March' is not a date (YYYY-MM-DD) or a date and time.",
        ),
        (
            {"range": "custom", "start": "2026-03-02", "end": "2026-03-01"},
            "end must be after start.",
        ),
        (
            {"granularity": "week", "compare": "v9"},
            "granularity must be auto, hour or day; got 'week'.",
        ),
        ({"compare": "v9"}, "compare must be one of v2_full, v2_simplified; got 'v9'."),
    ],
)
def test_chart_data__several_problems__the_first_in_the_order_the_controls_read(
    viewer_client, traffic, params, sentence
):
    response = viewer_client.get(url("chart-data", "prompts_v2", "latency", "json", **params))
    assert response.status_code == 400
    assert response.json() == {"error": sentence}


def test_chart_data__other_format__404(viewer_client, traffic):
    assert viewer_client.get(url("chart-data", "prompts_v2", "latency", "xml")).status_code == 404


def test_chart_csv__cost_per_day__by_day_whatever_the_granularity(viewer_client, traffic):
    body = viewer_client.get(
        url("chart-data", "prompts_v2", "cost_per_day", "json", range="7d")
    ).json()
    assert body["granularity"] == "day"
    assert all(r["period"].endswith("T00:00:00Z") for r in body["rows"])


def test_comparison_json__v2_tokens__worse_with_interval(viewer_client, traffic):
    body = viewer_client.get(url("comparison-data", "prompts_v2", "json", range="7d")).json()
    rows = {r["metric"]: r for r in body["rows"]}
    tokens = rows["input_tokens"]
    assert tokens["verdict"] == "worse"
    assert tokens["relative_lo"] < tokens["relative"] < tokens["relative_hi"]
    assert tokens["relative"] == pytest.approx(1750 / 500 - 1, rel=0.05)
    assert rows["hallucination_rate"]["verdict"] == "not yet known"
    assert set(rows) >= {
        "error_rate",
        "timeout_rate",
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "cost_per_reply",
        "positive_share",
        "correction_rate",
        "followups_per_reply",
        "cache_hit_rate",
        "format_compliance",
        "uncertainty_calibration",
        "consistency",
    }


def test_comparison_csv__one_row_per_metric(viewer_client, traffic):
    response = viewer_client.get(url("comparison-data", "prompts_v2", "csv"))
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["metric", "label", "unit"]
    assert len(rows) == 1 + 16


def test_cost_json__projection_at_every_phase(viewer_client, traffic):
    body = viewer_client.get(url("cost-data", "prompts_v2", "json")).json()
    by_pct = {r["percentage"]: r for r in body["rows"]}
    assert set(by_pct) >= {0, 5, 20, 50, 100}
    assert body["replies_per_day"] == pytest.approx(HOURS * 9 / 7)
    v1, v2 = body["cost_per_reply"]["v1"], body["cost_per_reply"]["v2_full"]
    assert by_pct[100]["per_day"] == pytest.approx(body["replies_per_day"] * v2)
    assert by_pct[50]["vs_all_v1"] == pytest.approx(body["replies_per_day"] * 0.5 * (v2 - v1))


def test_projection__37_percent__fragment_with_daily_cost_and_delta(viewer_client, traffic):
    cost = viewer_client.get(url("cost-data", "prompts_v2", "json")).json()
    v1, v2 = cost["cost_per_reply"]["v1"], cost["cost_per_reply"]["v2_full"]
    per_day = cost["replies_per_day"] * (0.63 * v1 + 0.37 * v2)
    delta = per_day - cost["replies_per_day"] * v1
    html = viewer_client.get(
        url("projection", rollout="prompts_v2", percentage=37)
    ).content.decode()
    # the monthly figures say which is which: the total, and the increase over all v1
    assert (
        f"At 37%: <strong>${per_day:.2f}/day</strong> (${per_day * 30:.0f}/month in all); "
        f"+${delta:.2f}/day, +${delta * 30:.0f}/month, compared with all v1"
    ) in html


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "percentage must be a whole number from 0 to 100; got 'abc'."),
        ("101", "percentage must be between 0 and 100; got 101."),
    ],
)
def test_projection__bad_percentage__400_names_the_field(viewer_client, rollout, value, message):
    response = viewer_client.get(url("projection", rollout="prompts_v2", percentage=value))
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_projection__unknown_rollout__404(viewer_client, db):
    response = viewer_client.get(url("projection", rollout="nope", percentage=5))
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_plotly_static__template_tag__resolves_and_is_served(client):
    from django.templatetags.static import static

    path = static("vendor/plotly.min.js")
    assert path == "/static/vendor/plotly.min.js"
    response = client.get(path)
    assert response.status_code == 200
    assert b"plotly.js v" in b"".join(response.streaming_content)[:200]


def test_plotly_static__collectstatic__copies_it(settings, tmp_path):
    from django.contrib.staticfiles import finders
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path
    finders.get_finder.cache_clear()
    call_command("collectstatic", interactive=False, verbosity=0)
    assert (tmp_path / "vendor" / "plotly.min.js").stat().st_size > 1_000_000


def test_projection__simplified_share_given__priced_at_that_share(viewer_client, traffic):
    # no v2_simplified replies: its cost falls back to v2_full's, so any share gives the same
    a = viewer_client.get(url("projection", rollout="prompts_v2", percentage=50)).content
    b = viewer_client.get(
        url("projection", rollout="prompts_v2", percentage=50, simplified_percentage=40)
    ).content
    assert a == b


def test_projection__bad_simplified_share__400_names_the_field(viewer_client, traffic):
    response = viewer_client.get(
        url("projection", rollout="prompts_v2", percentage=50, simplified_percentage=200)
    )
    assert response.status_code == 400
    assert response.json() == {"error": "simplified_percentage must be between 0 and 100; got 200."}
