"""The deployment guide walked in the browser: an operator starts Alpha, ticks the checklist,
advances to Beta, moves the slider, adds and removes an override, presses the emergency rollback
(and the bot's decide API answers v1 for every channel), re-enables; a reviewer can change
nothing. Screenshots of every page land in docs/screenshots/console-*.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from metrics.ingest.intake import record_events
from rollout import services
from rollout.checklist import ITEM_KEYS
from rollout.models import AuditEntry, Rollout

from .conftest import htmx_idle, login, screenshot

pytestmark = pytest.mark.e2e

KEY = "prompts_v2"
CHANNELS = [str(1_100_000_000_000_000_000 + i * 7919) for i in range(120)]


def seed_traffic() -> None:
    """A day of bot replies from 120 channels, through the real intake."""
    now = datetime.now(UTC)
    events = []
    for n, channel in enumerate(CHANNELS):
        for i in range(1 + n % 4):
            eid = f"e2e-{n}-{i}"
            ts = (now - timedelta(minutes=5 + 7 * i + n)).isoformat().replace("+00:00", "Z")
            events.append(
                {
                    "id": eid,
                    "type": "response",
                    "ts": ts,
                    "channel_id": channel,
                    "message_id": f"m-{eid}",
                    "rollout": KEY,
                    "variant": "v1",
                    "model": "anthropic/claude-3.5-sonnet",
                    "input_tokens": 500,
                    "output_tokens": 200,
                    "latency_ms": 900.0,
                    "error": None,
                }
            )
    assert record_events(events).accepted == len(events)


def decide_all(base_url: str, token: str, channels: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as api:
        out = {}
        for channel in channels:
            r = api.get(f"/api/v1/rollouts/{KEY}/decide", params={"channel_id": channel})
            assert r.status_code == 200, r.text
            out[channel] = r.json()["variant"]
        return out


def create_token_in_browser(page: Page) -> str:
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    page.fill("#tok-name", "e2e-bot")
    page.get_by_label("config:read (decide").check()
    page.get_by_role("button", name="Create token").click()
    raw = page.locator("#raw-token")
    expect(raw).to_have_value(re.compile(r"^sc_"))
    screenshot(page, "console-tokens")
    return raw.input_value()


def test_operator__walks_the_guide(page: Page, phone_page: Page, console: str, alice):
    csp_errors: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp_errors.append(m.text))
    seed_traffic()
    login(page, alice)
    expect(page).to_have_url(re.compile(f"/rollouts/{KEY}/$"))
    status = page.locator("#sec-status")
    expect(status).to_contain_text("Not started")
    expect(status).to_contain_text("120 channels")
    screenshot(page, "console-rollout-not-started")

    token = create_token_in_browser(page)
    page.get_by_role("link", name="Rollouts").click()

    # Start Alpha.
    page.fill("#advance-reason", "start of the v2 rollout")
    page.get_by_role("button", name="Start Alpha").click()
    expect(page.locator(".step-current")).to_contain_text("Alpha")
    expect(status).to_contain_text("Live")
    expect(status).to_contain_text("5%")

    # Tick the guide's testing checklist, one box after the other with no wait between: every
    # section ends current all the same (rollout/freshness.py).
    checklist = page.locator("#sec-checklist")
    for item in ITEM_KEYS:
        checklist.locator(f"input[data-item={item}]").check()
    expect(checklist).to_contain_text("6/6")
    expect(checklist).to_contain_text("alice")

    # Advance to Beta: the minimum watch has not passed, so an override reason is required.
    timeline = page.locator("#sec-timeline")
    expect(timeline).to_contain_text("Not ready yet")
    expect(timeline).not_to_contain_text("unticked")
    htmx_idle(page)  # what is typed next must not be redrawn away by a refresh still under way
    page.fill("#gate-override", "demo: watch shortened for the walk-through")
    page.fill("#advance-reason", "Alpha looks good")
    page.get_by_role("button", name="Advance to Beta").click()
    expect(page.locator(".step-current")).to_contain_text("Beta")
    expect(status).to_contain_text("20%")
    expect(page.locator("#sec-percentage")).to_contain_text("now 20%")
    expect(page.locator("#sec-checklist")).to_contain_text("Beta · 0/6")
    screenshot(page, "console-rollout")

    # Gradual rollback to 10% with the number field (keyboard), then the slider back to 20%.
    htmx_idle(page)
    page.fill("#pct-number", "10")
    preview = page.locator("#pct-preview")
    expect(preview).to_contain_text("Lowering to 10%")
    expect(preview).to_contain_text("from v2_full → v1")
    page.fill("#pct-reason", "quality check")
    page.get_by_role("button", name="Save percentage").click()
    expect(page.locator("#sec-percentage")).to_contain_text("now 10%")
    expect(status.locator(".tile").nth(3)).to_contain_text("10%")
    expect(page.locator("#sec-overrides input[name=revision]")).to_have_value(
        str(Rollout.objects.get(key=KEY).revision)
    )

    htmx_idle(page)
    page.locator("#pct-range").fill("20")
    expect(page.locator("#pct-number")).to_have_value("20")
    expect(preview).to_contain_text(re.compile(r"Raising to 20%\s+moves \d+ of 120 known channels"))
    expect(preview).to_contain_text("from v1 → v2_full")
    screenshot(page, "console-slider-preview")
    page.fill("#pct-reason", "back to Beta's 20%")
    page.get_by_role("button", name="Save percentage").click()
    expect(page.locator("#sec-percentage")).to_contain_text("now 20%")
    assert Rollout.objects.get(key=KEY).percentage == 20

    # Add an override, look the channel up, remove it.
    overrides = page.locator("#sec-overrides")
    htmx_idle(page)
    overrides.get_by_text("Add an override").click()
    page.fill("#ovr-channel", "424242424242424242")
    page.select_option("#ovr-variant", "v2_simplified")
    page.fill("#ovr-reason", "team test channel")
    page.get_by_role("button", name="Add override").click()
    expect(overrides.locator("#override-424242424242424242")).to_contain_text("v2_simplified")
    htmx_idle(page)
    page.fill("#lookup-channel", "424242424242424242")
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#lookup-result")).to_contain_text("team test channel")
    screenshot(page, "console-overrides")
    htmx_idle(page)
    page.prompt_answer = "test finished"
    remove = "Remove the override of channel 424242424242424242"
    overrides.get_by_role("button", name=remove).click()
    expect(overrides.locator("#override-424242424242424242")).to_have_count(0)
    assert AuditEntry.objects.filter(action="override.remove", reason="test finished").exists()

    # An override that the emergency rollback must outrank.
    htmx_idle(page)
    overrides.get_by_text("Add an override").click()
    page.fill("#ovr-channel", CHANNELS[0])
    page.select_option("#ovr-variant", "v2_full")
    page.fill("#ovr-reason", "pinned to v2")
    page.get_by_role("button", name="Add override").click()
    expect(overrides.locator(f"#override-{CHANNELS[0]}")).to_be_visible()
    before = decide_all(console, token, CHANNELS)
    assert before[CHANNELS[0]] == "v2_full"
    assert any(v != "v1" for v in before.values())

    # Emergency rollback: one button, one confirmation, immediate.
    htmx_idle(page)
    page.get_by_role("link", name="Emergency rollback").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.locator("textarea").fill("responses lost Sel's personality")
    screenshot(page, "console-rollback-dialog", full_page=False)
    dialog.get_by_role("button", name="Roll back now").click()
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Kill switch ON")
    expect(banner).to_contain_text("by alice")
    expect(page.locator("#emergency")).to_contain_text("kill switch ON")
    expect(status).to_contain_text("Kill switch ON")
    after = decide_all(console, token, CHANNELS)
    assert set(after.values()) == {"v1"}
    screenshot(page, "console-kill-switch")
    login(phone_page, alice)
    expect(phone_page.locator("#banner")).to_contain_text("Kill switch ON")
    screenshot(phone_page, "console-kill-switch-phone", full_page=False)

    # The banner is on every console page.
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#banner")).to_contain_text("Kill switch ON")
    page.select_option("#f-action", "kill_switch.engage")
    expect(page.locator("#audit-rows tbody tr")).to_have_count(1)
    expect(page.locator("#audit-rows")).to_contain_text("responses lost Sel's personality")
    page.select_option("#f-action", "")
    expect(page.locator("#audit-rows")).to_contain_text("Beta")
    screenshot(page, "console-audit")

    # The way back: re-enable at a chosen percentage.
    htmx_idle(page)
    page.fill("#banner input[name=percentage]", "5")
    page.fill("#banner input[name=reason]", "fix deployed")
    page.get_by_role("button", name="Re-enable").click()
    expect(page.locator("#banner")).not_to_contain_text("Kill switch ON")
    expect(page.locator("#emergency")).to_contain_text("Emergency rollback")
    again = decide_all(console, token, CHANNELS)
    assert again[CHANNELS[0]] == "v2_full"
    rollout = Rollout.objects.get(key=KEY)
    assert (rollout.enabled, rollout.percentage) == (True, 5)

    assert csp_errors == []

    # Phone screenshots of the pages, as they are now; nothing wider than the screen.
    phone_page.goto(f"/rollouts/{KEY}/")
    screenshot(phone_page, "console-rollout-phone")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.goto("/audit/")
    screenshot(phone_page, "console-audit-phone")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390


def test_reviewer__sees_everything_changes_nothing(page: Page, console: str, alice, bob):
    rollout = Rollout.objects.get(key=KEY)  # restored by serialized rollback
    services.move_to_phase(rollout, phase=1, actor=services.Actor("alice"), reason="start")
    login(page, bob)
    expect(page.locator("#sec-status")).to_contain_text("Alpha")
    for label in (
        "Emergency rollback",
        "Save percentage",
        "Add an override",
        "Start Alpha",
        "Advance to Beta",
        "Hold at",  # the control; "do not hold yet" (the success criteria) is for everyone
    ):
        expect(page.get_by_text(label, exact=False)).to_have_count(0)
    expect(page.locator("#sec-checklist input[type=checkbox]").first).to_be_disabled()
    expect(page.locator("#pct-range")).to_have_count(0)
    expect(page.get_by_role("note")).to_contain_text("Read-only")
    screenshot(page, "console-reviewer")

    # The server refuses too, even with a valid CSRF token.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"/rollouts/{KEY}/rollback/",
        form={"reason": "not allowed"},
        headers={"X-CSRFToken": csrf, "Referer": console + "/"},
    )
    assert response.status == 403
    assert Rollout.objects.get(key=KEY).enabled is True

    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("button", name="Create token")).to_have_count(0)


def test_stale_form__409_shows_who_changed_what(page: Page, console: str, alice):
    login(page, alice)
    rollout = Rollout.objects.get(key=KEY)
    services.update_rollout(
        rollout, actor=services.Actor("dave"), reason="other tab", percentage=20
    )
    page.fill("#pct-number", "50")
    page.fill("#pct-reason", "more")
    page.get_by_role("button", name="Save percentage").click()
    notice = page.locator("#sec-percentage .notice.warn")
    expect(notice).to_contain_text("dave changed the percentage to 20% (was 0%)")
    expect(notice).to_contain_text("just now")
    expect(notice).to_contain_text("retry")
    expect(page.locator("#sec-percentage")).to_contain_text("now 20%")
    screenshot(page, "console-conflict")
    assert Rollout.objects.get(key=KEY).percentage == 20


def test_login_page__shows_its_heading(page: Page, console: str):
    page.goto("/login/")
    expect(page.get_by_role("heading", name="Log in to selcontrol")).to_be_visible()
    screenshot(page, "console-login")


def test_emergency_rollback__without_javascript__still_works(browser, console: str, alice):
    rollout = Rollout.objects.get(key=KEY)
    services.move_to_phase(rollout, phase=1, actor=services.Actor("alice"), reason="start")
    context = browser.new_context(base_url=console, java_script_enabled=False)
    context.set_default_timeout(5000)
    page = context.new_page()
    try:
        login(page, alice)
        page.get_by_role("link", name="Emergency rollback").click()
        expect(page).to_have_url(re.compile(f"/rollouts/{KEY}/rollback/$"))
        page.fill("main textarea[name=reason]", "no-JS rollback")
        page.locator("main").get_by_role("button", name="Roll back now").click()
        expect(page.locator("#banner")).to_contain_text("Kill switch ON")
        assert Rollout.objects.get(key=KEY).enabled is False
    finally:
        context.close()


def test_session_expired__htmx_request__goes_to_login_page(page: Page, console: str, alice):
    from django.contrib.sessions.models import Session

    login(page, alice)
    # the page's lazy fragments (fleet, projection) load once after it: let them finish first, or
    # one of them meets the expired session and goes to the login page before the click does
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("button", name="Look up")).to_be_visible()
    Session.objects.all().delete()
    page.fill("#lookup-channel", "42")
    page.get_by_role("button", name="Look up").click()
    expect(page).to_have_url(re.compile(r"/login/\?next=%2Frollouts%2Fprompts_v2%2F$"))
    expect(page.locator("#id_username")).to_be_visible()


def test_keyboard__slider_and_emergency_dialog(page: Page, console: str, alice):
    rollout = Rollout.objects.get(key=KEY)
    services.move_to_phase(rollout, phase=1, actor=services.Actor("alice"), reason="start")
    login(page, alice)
    page.focus("#pct-range")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#pct-number")).to_have_value("7")
    expect(page.locator("#pct-preview")).to_contain_text("At 7%")

    page.focus("a.emergency-btn")
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("textarea")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    assert Rollout.objects.get(key=KEY).enabled is True
