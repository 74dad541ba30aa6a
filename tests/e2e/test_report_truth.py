"""The post-deployment review in Chromium says the rollout's real state: a kill switch at Full
stops the 30-day clock (no "at 100% since"), and after a re-enable at 100% the clock counts
from then. Screenshots: docs/screenshots/report-kill-switch-*.png."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from rollout import services
from rollout.models import Rollout

from .conftest import login, screenshot

pytestmark = pytest.mark.e2e
KEY = "prompts_v2"
SYSTEM = services.Actor("e2e", via="system")


def test_report__kill_switch_on_at_full__says_so_and_the_clock_is_stopped(
    page: Page, console: str, alice
):
    services.move_to_phase(
        KEY,
        phase=4,
        actor=SYSTEM,
        reason="full",
        gate_override_reason="e2e",
        now=timezone.now() - timedelta(days=3),
    )
    services.engage_kill_switch(KEY, actor=SYSTEM, reason="errors")
    login(page, alice)
    page.goto(f"/metrics/{KEY}/report/")
    expect(page.locator("#report-state")).to_have_text(
        "Now: kill switch on at Full: every channel gets v1."
    )
    expect(page.locator("#report-note")).to_contain_text("30-day clock is stopped")
    expect(page.locator("#no-after-period")).to_contain_text("serves 100% again")
    expect(page.locator("body")).not_to_contain_text("At 100% since")
    expect(page.locator("body")).not_to_contain_text("has been at 100% for")
    expect(page.locator("#decision-not-yet")).to_contain_text("does not serve 100%")
    screenshot(page, "report-kill-switch-on")

    services.release_kill_switch(KEY, actor=SYSTEM, reason="fixed", percentage=100)
    since = Rollout.objects.get(key=KEY).audit_entries.order_by("-created_at")[0].created_at
    page.reload()
    expect(page.locator("#report-state")).to_have_text("Now: Full, serving 100%.")
    expect(page.locator("#report-clock")).to_contain_text(
        f"Serving 100% since {since:%Y-%m-%d %H:%M} UTC (0.0 days); "
        "the clock restarted after kill switch on"
    )
    expect(page.locator("#decision-not-yet")).to_contain_text("at 100% for 0 days")
    screenshot(page, "report-kill-switch-released")
