"""Guardrail pages in Chromium: the post-deployment review from a simulated deployment (a decision
recorded through the form, the Markdown download), and a breach seen on the console and the
rules page. Screenshots: docs/screenshots/report-*.png, guardrails-*.png."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from metrics.guardrails.models import DeploymentDecision, GuardrailRule
from tests.metrics.guardrails.test_guardrail_rollback import V1, V2, Traffic, run, start_phase
from tests.metrics.guardrails.test_report import build_deployment

from .conftest import htmx_idle, login, screenshot

pytestmark = pytest.mark.e2e


def _errors(page) -> list[str]:
    """Console errors (CSP included) and 4xx/5xx answers, except the favicon the browser asks
    for on its own (its console line "Failed to load resource" is covered by the responses)."""
    messages: list[str] = []

    def on_console(m) -> None:
        if m.type == "error" and "Failed to load resource" not in m.text:
            messages.append(m.text)

    def on_response(r) -> None:
        if r.status >= 400 and not r.url.endswith("/favicon.ico"):
            messages.append(f"{r.status} {r.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    return messages


def test_report_page__simulated_deployment__decision_recorded_and_downloaded(
    page, console, alice, bob
):
    rollout_key = "prompts_v2"
    from rollout.models import Rollout

    now = datetime.now(UTC)
    full_at = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0, microsecond=0)
    build_deployment(
        Rollout.objects.get(key=rollout_key),
        bob,
        start=full_at - timedelta(days=35),
        full_at=full_at,
        now=now - timedelta(minutes=5),
    )
    errors = _errors(page)
    login(page, alice)
    page.goto(f"/metrics/{rollout_key}/report/")
    assert page.get_by_role("heading", name="Hallucination rate").is_visible()
    assert page.locator("svg polyline").count() == 2
    screenshot(page, "report-desktop")
    page.get_by_label("Partial success: iterate, plan v3").check()
    page.get_by_label("Why").fill(
        "Fewer hallucinations and better formats; cost above plan, try a leaner v3."
    )
    page.get_by_role("button", name="Record the decision").click()
    page.wait_for_url(f"**/metrics/{rollout_key}/report/")
    assert page.get_by_text("Decision recorded: Partial success").is_visible()
    decision = DeploymentDecision.objects.get()
    assert (decision.decision, decision.decided_by) == ("partial", "alice")
    with page.expect_download() as info:
        page.get_by_role("link", name="Markdown").click()
    text = open(info.value.path(), encoding="utf-8").read()
    assert "**Partial success: iterate, plan v3** by alice" in text
    screenshot(page, "report-decided")
    assert errors == []


def test_console_and_rules__errors_breach__kill_switch_shown_with_numbers(page, console, alice):
    from rollout.models import Rollout

    rollout = Rollout.objects.get(key="prompts_v2")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    GuardrailRule.objects.filter(rollout=rollout, key="cost").update(threshold=5000.0)
    canary = start_phase(rollout, 3, at=start)
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, error_rate=0.12)}, per_minute=150)
    minute, _ = run(traffic, canary, minutes=30, start=start)
    assert minute is not None
    errors = _errors(page)
    login(page, alice)
    page.goto("/rollouts/prompts_v2/")
    htmx_idle(page)
    panel = page.locator("#guardrails")
    assert "1 breached" in panel.inner_text()
    assert "kill switch engaged" in panel.inner_text()
    assert 'A rule\'s state answers "roll back now?"' in panel.inner_text()
    screenshot(page, "guardrails-console")
    page.get_by_role("link", name="rules & history").click()
    page.wait_for_url("**/metrics/prompts_v2/guardrails/")
    assert page.locator("#rule-errors").get_by_text("breached").first.is_visible()
    # a rollout's own page: the nav marks Rollouts, not Dashboard
    assert page.locator('.mainnav a[aria-current="page"]').all_inner_texts() == ["Rollouts"]
    screenshot(page, "guardrails-rules")
    page.goto("/metrics/prompts_v2/report/")
    assert page.locator('.mainnav a[aria-current="page"]').all_inner_texts() == ["Rollouts"]
    assert errors == []
