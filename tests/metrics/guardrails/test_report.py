"""The post-deployment review: built from simulated traffic (metrics.simulation through the real
ingest path) and graded review samples; 40 days at 50% then 31 days at 100%."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db.models import Count, Sum

from metrics import rollups, stats
from metrics.guardrails import deployment_report
from metrics.guardrails.models import DeploymentDecision
from metrics.guardrails.rules import Clusters
from metrics.ingest.intake import record_events
from metrics.models import ResponseEvent
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade
from rollout import services
from rollout.models import AuditEntry, Rollout
from tests.metrics.guardrails.test_guardrail_rollback import Behaviour, Traffic

SYSTEM = services.Actor("pytest", via="system")
FULL_AT = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
START = FULL_AT - timedelta(days=35)
NOW = FULL_AT + timedelta(days=31, hours=12)
BEHAVIOURS = {
    "v1": Behaviour(positive_rate=0.10, negative_rate=0.06),
    "v2_full": Behaviour(
        input_tokens=1750, output_tokens=240, positive_rate=0.14, negative_rate=0.03
    ),
}
RUBRIC = {"uncertainty": "appropriate", "consistent": "yes", "sounds_like_sel": "4"}


def build_deployment(
    rollout: Rollout,
    reviewer,
    *,
    per_day: int = 60,
    sample: int = 24,
    start: datetime = START,
    full_at: datetime = FULL_AT,
    now: datetime = NOW,
) -> Rollout:
    """Canary (50%) from ``start``, Full (100%) from ``full_at``: each day ``per_day`` replies
    around noon through the real ingest path (variants from the rollout's rule at the time),
    and each Sunday the week's review sample graded (v1 hallucinates more, follows formats
    less). One busy hour a day keeps the rollups small, so the test stays quick."""
    with time_machine.travel(start, tick=False):
        services.move_to_phase(
            rollout, phase=3, actor=SYSTEM, reason="canary", gate_override_reason="sim"
        )
    traffic = Traffic(rollout, BEHAVIOURS, seed=7, per_minute=per_day, channels=300, text=True)
    rng = random.Random(3)
    day = start
    while day < now:
        if day == full_at:
            with time_machine.travel(full_at, tick=False):
                services.move_to_phase(
                    rollout, phase=4, actor=SYSTEM, reason="full", gate_override_reason="sim"
                )
        noon = day + timedelta(hours=12)
        if noon < now:
            with time_machine.travel(noon + timedelta(minutes=5), tick=False):
                record_events(traffic.events(noon), now=noon + timedelta(minutes=5))
        end = day + timedelta(days=1)
        if day.weekday() == 6 and end <= now:  # Sunday done: review the week
            with time_machine.travel(end, tick=False):
                week = reviews.draw_sample(
                    rollout_key=rollout.key,
                    week_start=(day - timedelta(days=6)).date(),
                    actor=SYSTEM,
                    size=sample,
                    now=end,
                )
                while (item := reviews.next_item(week, reviewer, now=end)) is not None:
                    v1 = item.response.variant == rollout.control_variant
                    bad = rng.random() < (0.15 if v1 else 0.05)
                    followed = rng.random() < (0.65 if v1 else 0.9)
                    grade = {
                        **RUBRIC,
                        "hallucination": "major" if bad else "none",
                        "hallucination_note": "invented a date" if bad else "",
                        "format": "followed" if followed else "not_followed",
                    }
                    reviews.submit_grade(item, reviewer, grade, now=end)
        day = end
    rollups.catch_up()  # what the rollup task does after each commit (no commits inside a test)
    rollout.refresh_from_db()
    return rollout


@pytest.fixture
def deployed(rollout, bob) -> Rollout:
    return build_deployment(rollout, bob)


def test_build__after_30_days_at_full__quality_figures_before_and_after(deployed):
    report = deployment_report.build(deployed, NOW)
    assert report["ready"] is True and report["full_since"] == FULL_AT.isoformat()
    assert report["clock_restarted_after"] is None  # Canary before Full interrupted nothing
    before = [(FULL_AT - timedelta(days=30)).isoformat(), FULL_AT.isoformat()]
    assert report["periods"]["before"] == before
    h, f = report["hallucination"], report["format_compliance"]
    assert h["before"]["n"] > 20 and h["after"]["n"] > 20
    assert h["before"]["rate"] > h["after"]["rate"] and h["change"]["points"] < 0
    assert f["after"]["rate"] > f["before"]["rate"]
    weeks = report["sentiment"]
    assert {w["variant"] for w in weeks} >= {"v1", "v2_full"}
    assert all(w["positive_share"] is None or 0 <= w["positive_share"] <= 1 for w in weeks)


def test_build__cost_increase__compared_with_the_guides_projection(deployed):
    c = deployment_report.build(deployed, NOW)["cost"]

    def per_reply(variants, since, until):
        rows = ResponseEvent.objects.filter(variant__in=variants, ts__gte=since, ts__lt=until)
        agg = rows.aggregate(cost=Sum("cost_usd"), n=Count("id"))
        return float(agg["cost"]) / agg["n"]

    expected = per_reply(
        ["v2_full", "v2_simplified"], FULL_AT, FULL_AT + timedelta(days=30)
    ) / per_reply(["v1"], FULL_AT - timedelta(days=30), FULL_AT)
    assert c["increase_ratio"] == round(expected, 2)
    # output tokens ($15/M) dominate, which the guide's input-only projection leaves out
    assert c["projected_ratio"] == 3.5 and c["vs_projection"] < 0
    assert c["projected_daily_usd"] == round(c["after"]["replies_per_day"] * 0.00525, 2)


def test_build__not_at_full__says_when_the_review_is_due(rollout):
    with time_machine.travel(START, tick=False):
        services.move_to_phase(
            rollout, phase=3, actor=SYSTEM, reason="canary", gate_override_reason="t"
        )
    report = deployment_report.build(rollout, START + timedelta(days=1))
    assert report["ready"] is False and report["full_since"] is None
    assert "not at 100%" in report["note"]


def at_full_for(rollout: Rollout, days: float) -> Rollout:
    """The rollout moved to Full ``days`` ago (back-dated, the gate overridden)."""
    when = datetime.now(UTC) - timedelta(days=days)
    with time_machine.travel(when, tick=False):
        return services.move_to_phase(
            rollout, phase=4, actor=SYSTEM, reason="full", gate_override_reason="t", now=when
        )


def test_record_decision__keeps_who_why_and_the_figures(rollout):
    rollout = at_full_for(rollout, 31)
    made = deployment_report.record_decision(
        rollout,
        decision="partial",
        actor=services.Actor("alice"),
        reason="format better, cost high",
    )
    assert (made.decided_by, made.reason) == ("alice", "format better, cost high")
    assert made.report["rollout"] == "prompts_v2"
    entry = AuditEntry.objects.get(rollout=rollout, action="deployment.decision")
    assert entry.actor == "alice" and entry.after["decision"] == "partial"


def test_record_decision__unknown_decision__is_refused(rollout):
    with pytest.raises(services.InvalidChange, match="decision must be one of"):
        deployment_report.record_decision(rollout, decision="maybe", actor=SYSTEM, reason="x")
    assert not DeploymentDecision.objects.exists()


def test_report_page_and_downloads__render_from_simulated_data(deployed, viewer_client):
    with time_machine.travel(NOW, tick=False):
        page = viewer_client.get(f"/metrics/{deployed.key}/report/")
        md = viewer_client.get(f"/metrics/{deployed.key}/report.md")
        js = viewer_client.get(f"/metrics/{deployed.key}/report.json")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Hallucination rate" in body and "Format compliance" in body and "review due" in body
    assert "<polyline" in body  # the sentiment trend
    assert "Record the decision" not in body  # viewers read only
    assert md.status_code == 200 and "attachment" in md["Content-Disposition"]
    assert md.content.decode().startswith("# Post-deployment review: Prompts v2")
    assert json.loads(js.content)["cost"]["projected_ratio"] == 3.5


def test_report_download__other_format__404(rollout, viewer_client):
    assert viewer_client.get(f"/metrics/{rollout.key}/report.pdf").status_code == 404


def test_decide__operator__records_and_redirects(rollout, operator_client):
    rollout = at_full_for(rollout, 31)
    response = operator_client.post(
        f"/metrics/{rollout.key}/report/decision/", {"decision": "success", "reason": "all good"}
    )
    assert response.status_code == 302
    assert DeploymentDecision.objects.get().decided_by == "alice"


def test_decide__viewer__403(rollout, viewer_client):
    response = viewer_client.post(
        f"/metrics/{rollout.key}/report/decision/", {"decision": "success", "reason": "x"}
    )
    assert response.status_code == 403
    assert not DeploymentDecision.objects.exists()


def test_decide__no_reason__422_naming_the_field(rollout, operator_client):
    rollout = at_full_for(rollout, 31)
    response = operator_client.post(
        f"/metrics/{rollout.key}/report/decision/", {"decision": "failure"}
    )
    assert response.status_code == 422
    assert "Reason" in response.content.decode()
    assert not DeploymentDecision.objects.exists()


ONE_UNIT = 0.5e-4 + 1e-9  # half a unit of the 4th decimal: the most that rounding can move it


def test_build__review_intervals__channels_as_the_unit_from_the_graded_replies(deployed):
    """The hallucination intervals against the graded replies grouped by channel here: each
    period's counts divided by its channels' design effect, then Wilson and Newcombe."""
    report = deployment_report.build(deployed, NOW)
    periods = {
        "before": (FULL_AT - timedelta(days=30), FULL_AT, ["v1"]),
        "after": (FULL_AT, NOW, ["v2_full", "v2_simplified"]),
    }
    want = {}
    for name, (since, until, variants) in periods.items():
        per_channel: dict[str, list[int]] = {}
        first: set[int] = set()
        grades = ReviewGrade.objects.filter(submitted_at__isnull=False)
        for grade in grades.order_by("item_id", "submitted_at", "id").select_related(
            "item__response"
        ):
            reply = grade.item.response
            if grade.item_id in first or not (since <= reply.ts < until):
                continue
            first.add(grade.item_id)
            if reply.variant in variants:
                cell = per_channel.setdefault(reply.channel_id, [0, 0])
                cell[0] += grade.hallucination in ("minor", "major")
                cell[1] += 1
        k = sum(c[0] for c in per_channel.values())
        n = sum(c[1] for c in per_channel.values())
        deff = stats.design_effect(k, n, Clusters.of(per_channel.values()))
        want[name] = (k, n, deff, stats.wilson(k / deff, n / deff))
    h = report["hallucination"]
    for name in periods:
        k, n, deff, (lo, hi) = want[name]
        assert (h[name]["k"], h[name]["n"]) == (k, n)
        assert h[name]["design_effect"] == round(deff, 3)
        # The report rounds to 4 decimals from its own summation order: a bound on a rounding
        # edge may land one unit of the 4th decimal either way (seen: -0.1583 vs -0.1582).
        assert h[name]["ci"] == pytest.approx([lo, hi], abs=ONE_UNIT)
    (kb, nb, db, _), (ka, na, da, _) = want["before"], want["after"]
    _d, lo, hi = stats.newcombe_difference(ka / da, na / da, kb / db, nb / db)
    assert h["change"]["ci"] == pytest.approx([lo, hi], abs=ONE_UNIT)


def test_record_decision__before_30_days_at_full__refused_saying_when(rollout):
    rollout = at_full_for(rollout, 12)
    with pytest.raises(services.InvalidChange, match="at 100% for 12 days, so the form opens on"):
        deployment_report.record_decision(rollout, decision="success", actor=SYSTEM, reason="x")
    assert not DeploymentDecision.objects.exists()


def test_report_page__before_30_days__no_form_but_when_it_opens(rollout, operator_client):
    rollout = at_full_for(rollout, 3)
    body = operator_client.get(f"/metrics/{rollout.key}/report/").content.decode()
    assert "Record the decision" not in body
    assert "the form opens on" in body
    response = operator_client.post(
        f"/metrics/{rollout.key}/report/decision/", {"decision": "success", "reason": "early"}
    )
    assert response.status_code == 422 and "the form opens on" in response.content.decode()
    assert not DeploymentDecision.objects.exists()


def test_report__no_replies__says_no_data_not_zero_dollars(rollout, viewer_client):
    rollout = at_full_for(rollout, 2)
    body = viewer_client.get(f"/metrics/{rollout.key}/report/").content.decode()
    md = viewer_client.get(f"/metrics/{rollout.key}/report.md").content.decode()
    assert "$0.00000" not in body and "$0.00000" not in md
    assert "no data → no data" in body
    assert "| Cost per reply | no data | no data |" in md


def test_report__before_full__no_after_period_not_a_range_of_one_day(rollout, viewer_client):
    services.move_to_phase(rollout, phase=2, actor=SYSTEM, reason="beta", gate_override_reason="t")
    body = viewer_client.get(f"/metrics/{rollout.key}/report/").content.decode()
    md = viewer_client.get(f"/metrics/{rollout.key}/report.md").content.decode()
    data = json.loads(viewer_client.get(f"/metrics/{rollout.key}/report.json").content)
    assert data["periods"]["after"] is None and data["periods"]["before"]
    today = datetime.now(UTC).date().isoformat()
    assert f"{today} to {today}" not in body and f"{today} to {today}" not in md
    assert "after = v2: no after period yet, it starts when the rollout reaches Full (100%)" in body
    assert "After (v2): no after period yet: it starts when the rollout reaches Full (100%)." in md


def test_report__at_full__after_period_from_full_to_now(rollout, viewer_client):
    rollout = at_full_for(rollout, 2)
    data = json.loads(viewer_client.get(f"/metrics/{rollout.key}/report.json").content)
    start, end = (datetime.fromisoformat(t) for t in data["periods"]["after"])
    assert start == datetime.fromisoformat(data["full_since"])
    assert timedelta(days=2) <= end - start < timedelta(days=2, minutes=5)


def test_build__daily_cost__replies_and_cost_over_the_days_with_data_from_raw_events(deployed):
    """The card's daily figures against the raw replies: the after period's replies and cost
    divided by the days with data (from the first hour with replies to the end of the last),
    and the daily cost equal to replies/day times the cost a reply shown beside it."""
    c = deployment_report.build(deployed, NOW)["cost"]["after"]
    until = FULL_AT + timedelta(days=30)
    rows = ResponseEvent.objects.filter(ts__gte=FULL_AT, ts__lt=until)
    agg = rows.aggregate(cost=Sum("cost_usd"), n=Count("id"))
    hours = sorted(
        {ts.replace(minute=0, second=0, microsecond=0) for ts in rows.values_list("ts", flat=True)}
    )
    days = (hours[-1] + timedelta(hours=1) - hours[0]) / timedelta(days=1)  # every day has data
    assert c["all_replies"] == agg["n"] and c["days_with_data"] == round(days, 4)
    assert c["replies_per_day"] == round(agg["n"] / days, 1)
    assert c["daily_usd"] == round(float(agg["cost"]) / days, 2)
    assert c["daily_usd"] == pytest.approx(c["replies_per_day"] * c["all_per_reply_usd"], abs=0.01)
    # one busy hour a day, 60 replies: about 60 a day, not 60 an hour scaled to a day
    assert 55 <= c["replies_per_day"] <= 65


def test_build__daily_cost__a_few_minutes_of_traffic_are_not_scaled_past_their_hour(rollout):
    rollout = at_full_for(rollout, 2)
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0)
    traffic = Traffic(rollout, BEHAVIOURS, seed=1, per_minute=30, channels=50, text=True)
    record_events(traffic.events(start), now=now)
    rollups.catch_up()
    c = deployment_report.build(rollout, now)["cost"]["after"]
    n = ResponseEvent.objects.count()
    assert c["all_replies"] == n == 30
    # the data span: the start of the hour to now (the current hour counts as far as it has gone)
    span = max(now - start, timedelta(0)) / timedelta(days=1)
    assert c["days_with_data"] == pytest.approx(span, abs=1e-4)
    assert c["daily_usd"] == pytest.approx(c["replies_per_day"] * c["all_per_reply_usd"], abs=0.01)


def test_build__kill_switch_on_at_full__clock_stopped_and_the_state_said(rollout, viewer_client):
    rollout = at_full_for(rollout, 3)
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="errors")
    rollout.refresh_from_db()
    report = deployment_report.build(rollout)
    assert report["full_since"] is None and report["days_at_full"] == 0
    assert report["ready"] is False and report["clock_stopped"] is True
    assert report["state"] == "kill switch on at Full: every channel gets v1"
    assert "30-day clock is stopped" in report["note"]
    body = viewer_client.get(f"/metrics/{rollout.key}/report/").content.decode()
    assert "kill switch on at Full" in body and "At 100% since" not in body
    assert "Serving 100% since" not in body and "clock stopped" in body


def test_build__rolled_back_and_re_enabled_off_plan__not_serving_100(rollout):
    rollout = at_full_for(rollout, 3)
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="errors")
    services.release_kill_switch(rollout, actor=SYSTEM, reason="fixed", percentage=20)
    rollout.refresh_from_db()
    report = deployment_report.build(rollout)
    assert report["full_since"] is None
    assert report["state"] == "off plan: Full is 100%, serving 20%"


def test_build__back_at_100_after_a_rollback__clock_restarts_from_then(rollout, viewer_client):
    rollout = at_full_for(rollout, 10)
    with time_machine.travel(datetime.now(UTC) - timedelta(days=5), tick=False):
        services.engage_kill_switch(rollout, actor=SYSTEM, reason="errors")
    back = datetime.now(UTC) - timedelta(days=2)
    with time_machine.travel(back, tick=False):
        services.release_kill_switch(rollout, actor=SYSTEM, reason="fixed", percentage=100)
    rollout.refresh_from_db()
    report = deployment_report.build(rollout)
    assert datetime.fromisoformat(report["full_since"]) == back
    assert report["days_at_full"] == 2.0
    assert report["clock_restarted_after"]["state"] == "kill switch on"
    assert datetime.fromisoformat(report["due_at"]) == back + timedelta(days=30)
    body = viewer_client.get(f"/metrics/{rollout.key}/report/").content.decode()
    assert "Serving 100% since" in body and "the clock restarted after kill switch on" in body
