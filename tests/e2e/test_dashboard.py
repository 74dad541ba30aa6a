"""The comparison dashboard in Debian's Chromium over simulated traffic: charts drawn from the
server's figures under the strict CSP, redrawn without a reload when the range changes, with the
phase markers on the time axes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from metrics import rollups
from rollout import services
from tests.conftest import SYSTEM
from tests.e2e.conftest import login, screenshot
from tests.metrics.dashboard.dashboard_traffic import V1, V2, Profile, events_for, load

pytestmark = pytest.mark.e2e
HOURS = 96  # four days of traffic (the 7-day range shows them and the markers)


@pytest.fixture
def traffic(console, carol):
    """Four days of v1 and v2 replies through the real intake, and the rollout's history: Alpha
    80 h ago, Beta 50 h ago, a rollback 20 h ago, re-enabled 10 h ago, an override 5 h ago."""
    from rollout.models import Rollout

    now = timezone.now()
    start = rollups.hour_of(now) - timedelta(hours=HOURS - 1)
    load(
        events_for("v1", V1, start, HOURS, 8) + events_for("v2_full", V2, start, HOURS, 4),
        now=now,
    )
    rollout = Rollout.objects.get(key="prompts_v2")
    steps = [
        (80, lambda: services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="start alpha")),
        (
            50,
            lambda: services.move_to_phase(
                rollout, phase=2, actor=SYSTEM, reason="alpha clean", gate_override_reason="e2e"
            ),
        ),
        (20, lambda: services.engage_kill_switch(rollout, actor=SYSTEM, reason="error spike")),
        (
            10,
            lambda: services.release_kill_switch(
                rollout, actor=SYSTEM, reason="provider fixed", percentage=20
            ),
        ),
        (
            5,
            lambda: services.set_override(
                rollout,
                "123456789012345678",
                variant="v2_full",
                actor=SYSTEM,
                reason="power user asked",
            ),
        ),
    ]
    for hours_ago, step in steps:
        with time_machine.travel(now - timedelta(hours=hours_ago), tick=False):
            step()
    return carol


def _login(page, user) -> None:
    """Log in with patient timeouts: plotly.js is 4.6 MB through the test server and the
    machine may be busy; every wait below is still bounded."""
    page.set_default_timeout(20_000)
    page.set_default_navigation_timeout(20_000)
    login(page, user)


def _open(page, path: str) -> None:
    """Go to a page without waiting for every subresource; the charts are waited for."""
    page.goto(path, wait_until="domcontentloaded")


def _drawn(page, key: str, at_least: int = 1) -> None:
    page.wait_for_function(
        "([id, n]) => Number(document.getElementById(id)?.dataset.drawn || 0) >= n",
        arg=[f"chart-{key}", at_least],
    )


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    """Console errors and warnings (CSP refusals among them) and failed requests but the
    favicon's, which the browser asks for on its own."""

    def on_console(message) -> None:
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            problems.append(message.text)

    def on_response(response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_dashboard__opened__draws_every_chart_under_the_csp(page, traffic):
    problems = _watch_console(page)
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/")
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
        "projection",
    ):
        _drawn(page, key)
    assert page.locator("#chart-latency .main-svg").count() >= 1
    # the guardrails' states arrive as their own fragment
    page.wait_for_function(
        "() => !document.getElementById('dash-guardrails').textContent.includes('loading')"
    )
    assert "Guardrails" in page.inner_text("#dash-guardrails")
    # the range runs to now (the data's end), not to the end of the current hour
    line = page.inner_text("#dash-range")
    shown = re.search(r" to now, (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", line)
    assert shown, line
    end = datetime.strptime(shown[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert timedelta(0) <= datetime.now(UTC) - end < timedelta(minutes=3), line
    assert problems == [], "\n".join(problems)
    screenshot(page, "dashboard-desktop")


def test_dashboard__range_changed__charts_redraw_without_reload(page, traffic):
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/")
    _drawn(page, "latency")
    page.evaluate("window.__sameDocument = 'yes'")
    start_24h = page.evaluate("document.getElementById('chart-latency').layout.xaxis.range[0]")

    page.click("label[for=range-7d]")
    page.wait_for_selector("#dash-range[data-range='7d']")
    _drawn(page, "latency")

    assert page.evaluate("window.__sameDocument") == "yes"
    start_7d = page.evaluate("document.getElementById('chart-latency').layout.xaxis.range[0]")
    assert start_7d < start_24h
    assert "range=7d" in page.url


def test_dashboard__week_selected__phase_markers_on_every_time_axis(page, traffic):
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/?range=7d")
    for key in ("responses", "latency", "cost_per_day", "corrections"):
        _drawn(page, key)
        labels = page.locator(f"#chart-{key} .annotation-text").all_text_contents()
        assert any(text.startswith("Alpha") for text in labels), labels
        assert any(text.startswith("Beta") for text in labels), labels
        assert any(text.startswith("Rollback") for text in labels), labels
    # vertical lines too, one per group of markers (the override 5 h after the re-enable is
    # within 3% of the week: one line, "Re-enabled 20% +1")
    assert page.locator("#chart-latency .shapelayer path").count() == 4


def test_dashboard__projection_field_typed__shows_cost_before_saving(page, traffic):
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/")
    page.fill("#try-pct", "37")
    page.wait_for_selector("#projection-out .projection[data-percentage='37']")
    assert page.inner_text("#projection-out").startswith("At 37%: $")


def test_dashboard__phone__readable(phone_page, traffic):
    _login(phone_page, traffic)
    _open(phone_page, "/metrics/prompts_v2/")
    _drawn(phone_page, "latency")
    _drawn(phone_page, "cost_per_day")
    screenshot(phone_page, "dashboard-phone")
    wide = phone_page.evaluate(
        "[...document.querySelectorAll('main *')]"
        ".filter(e => e.getBoundingClientRect().right > 391)"
        ".slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 391, wide


def test_console_slider__moved__shows_projected_cost_before_saving(page, traffic, alice):
    _login(page, alice)
    _open(page, "/rollouts/prompts_v2/")
    page.wait_for_selector("#pct-cost .projection")  # the current percentage, on load
    page.locator("#pct-range").fill("37")
    page.wait_for_selector("#pct-cost .projection[data-percentage='37']")
    assert page.inner_text("#pct-cost").startswith("At 37%: $")
    assert "now 20%" in page.inner_text("#sec-percentage h2")  # nothing saved


# --- issue 16: what an operator meets ---------------------------------------------------------

TIMING_OUT = Profile(
    input_tokens=1750, output_tokens=140, latency_ms=1050.0, error_rate=0.06, timeout_share=1.0
)


@pytest.fixture
def incident(console, carol):
    """A young rollout in trouble: four days of v1; v2_full for the last 6 hours only (Alpha
    6 h ago), 6% of its replies timing out at 30 s; 2 h ago an incident of four changes in
    nine minutes (percentage raised, rollback, an override, re-enabled at 5%)."""
    from rollout.models import Rollout

    now = timezone.now()
    start = rollups.hour_of(now) - timedelta(hours=HOURS - 1)
    young = rollups.hour_of(now) - timedelta(hours=5)
    v2 = events_for("v2_full", TIMING_OUT, young, 6, 12)
    for event in v2:
        if event.get("error") == "timeout":
            event["latency_ms"] = 30_000.0
    load(events_for("v1", V1, start, HOURS, 8) + v2, now=now)
    rollout = Rollout.objects.get(key="prompts_v2")
    at = now - timedelta(hours=2)
    steps = [
        (
            now - timedelta(hours=6),
            lambda: services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="start alpha"),
        ),
        (
            at,
            lambda: services.update_rollout(
                rollout, actor=SYSTEM, reason="more traffic", percentage=20
            ),
        ),
        (
            at + timedelta(minutes=3),
            lambda: services.engage_kill_switch(rollout, actor=SYSTEM, reason="timeouts"),
        ),
        (
            at + timedelta(minutes=5),
            lambda: services.set_override(
                rollout, "123456789012345678", variant="v1", actor=SYSTEM, reason="vip on v1"
            ),
        ),
        (
            at + timedelta(minutes=9),
            lambda: services.release_kill_switch(
                rollout, actor=SYSTEM, reason="provider fixed", percentage=5
            ),
        ),
    ]
    for when, step in steps:
        with time_machine.travel(when, tick=False):
            step()
    return carol


def _layout(page, key: str, path: str):
    return page.evaluate(f"document.getElementById('chart-{key}').layout.{path}")


def test_dashboard__incident_with_four_changes_in_minutes__one_marker_the_v2_lines_clear(
    page, incident
):
    problems = _watch_console(page)
    _login(page, incident)
    _open(page, "/metrics/prompts_v2/")
    _drawn(page, "latency")
    screenshot(page, "dashboard-incident-desktop")
    labels = page.locator("#chart-latency .annotation-text").all_text_contents()
    assert sorted(labels) == ["Alpha 5%", "Rollback +3"], labels
    assert page.locator("#chart-latency .shapelayer path").count() == 2
    # every label above the plot area: none covers a line
    plot = page.locator("#chart-latency .nsewdrag").first.bounding_box()
    for text in page.locator("#chart-latency .annotation-text").all():
        box = text.bounding_box()
        assert box["y"] + box["height"] <= plot["y"] + 1, (box, plot)
    # p99 at the 30 s timeouts, p50 still readable: a log axis
    assert _layout(page, "latency", "yaxis.type") == "log"
    ticks = page.locator("#chart-latency .ytick text").all_text_contents()
    assert len(ticks) >= 3, ticks
    assert problems == [], "\n".join(problems)


def test_dashboard__incident_on_a_phone__readable(phone_page, incident):
    _login(phone_page, incident)
    _open(phone_page, "/metrics/prompts_v2/")
    _drawn(phone_page, "latency")
    _drawn(phone_page, "cost_per_day")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 391
    screenshot(phone_page, "dashboard-incident-phone")


def test_dashboard__young_rollout_today__partial_days_hatched_in_cost_per_day(page, incident):
    _login(page, incident)
    _open(page, "/metrics/prompts_v2/?range=7d")
    _drawn(page, "cost_per_day")
    bars = page.evaluate(
        "document.getElementById('chart-cost_per_day').data.map(t => t.marker.pattern?.shape)"
    )
    # today is not over: its bar is hatched on every variant; the first day starts mid-day
    assert all(shapes and shapes[-1] == "/" for shapes in bars), bars
    assert page.locator("#card-cost_per_day .chart-note").inner_text().startswith("Hatched bars")


def test_dashboard__30_days_clicked__daily_points(page, traffic):
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/")
    _drawn(page, "latency")
    assert page.get_attribute("#dash-range", "data-granularity") == "hour"
    page.click("label[for=range-30d]")
    page.wait_for_selector("#dash-range[data-range='30d']")
    _drawn(page, "latency")
    assert page.get_attribute("#dash-range", "data-granularity") == "day"
    points = page.evaluate("document.getElementById('chart-latency').data.map(t => t.x.length)")
    assert max(points) <= 31, points


def test_dashboard__custom_chosen__same_charts_with_the_dates_to_edit(page, traffic):
    problems = _watch_console(page)
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/?range=7d")
    _drawn(page, "latency")
    shown = (
        page.get_attribute("#dash-range", "data-start"),
        page.get_attribute("#dash-range", "data-end"),
    )
    page.click("label[for=range-custom]")
    page.wait_for_selector("#dash-range[data-range='custom']")
    _drawn(page, "latency")
    assert (page.input_value("#dash-start"), page.input_value("#dash-end")) == shown
    assert page.locator("#dash-input-error").is_hidden()
    assert page.locator(".chart-card").count() >= 10

    # a date cleared: the sentence beside the controls, the charts stay
    page.fill("#dash-end", "")
    page.dispatch_event("#dash-end", "change")
    page.wait_for_selector("#dash-input-error:not([hidden])")
    assert "end" in page.inner_text("#dash-input-error")
    assert page.locator(".chart-card").count() >= 10
    assert "range=custom" in page.url and "end=&" not in page.url + "&"
    assert [p for p in problems if "422" not in p] == [], problems


def test_dashboard__emergency_rollback_pressed__subtitle_follows_the_kill_switch(
    page, traffic, alice
):
    _login(page, alice)
    _open(page, "/metrics/prompts_v2/")
    _drawn(page, "latency")
    assert "20% of channels on v2_full" in page.inner_text("#dash-status")
    page.click(".emergency-btn")
    page.fill("#rb-prompts_v2-reason", "errors spiking")
    page.click("#rb-prompts_v2 button[type=submit]")
    page.wait_for_selector("#dash-status[data-enabled='false']")
    status = page.inner_text("#dash-status")
    assert "every channel gets v1" in status and "of channels on" not in status, status
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chart-latency .annotation-text')]"
        ".some(e => e.textContent.startsWith('Rollback'))"
    )  # the charts refetched: the rollback is a marker now
    labels = page.locator("#chart-latency .annotation-text").all_text_contents()
    assert any(text.startswith("Rollback") for text in labels), labels


def _granularity_shown(page) -> str:
    """The selector's text as a person reads it (the selected option's label)."""
    return page.evaluate(
        "(() => { const s = document.getElementById('dash-granularity');"
        " return s.options[s.selectedIndex].textContent; })()"
    )


def test_dashboard__30_days_then_custom__granularity_selector_says_what_the_charts_draw(
    page, traffic
):
    _login(page, traffic)
    _open(page, "/metrics/prompts_v2/")
    _drawn(page, "latency")
    assert _granularity_shown(page) == "by hour (auto)"
    page.click("label[for=range-30d]")
    page.wait_for_selector("#dash-range[data-range='30d']")
    _drawn(page, "latency")
    assert "by day ·" in page.inner_text("#dash-range")
    assert _granularity_shown(page) == "by day (auto)"
    page.click("label[for=range-custom]")
    page.wait_for_selector("#dash-range[data-range='custom']")
    _drawn(page, "latency")
    assert page.get_attribute("#dash-range", "data-granularity") == "day"
    assert _granularity_shown(page) == "by day (auto)"
    points = page.evaluate("document.getElementById('chart-latency').data.map(t => t.x.length)")
    assert max(points) <= 31, points
    screenshot(page, "dashboard-custom-after-30-days", full_page=False)
