"""The fleet panel in Debian's Chromium: real bot clients report to the live server; the operator
presses the emergency rollback and watches "acknowledged by N of N" arrive without a reload, and
an instance frozen on purpose turns red."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from rollout import services
from selcontrol_client import SelControl
from tests.client.conftest import bot_token  # noqa: F401  (fixture)
from tests.conftest import SYSTEM

from .conftest import SCREENSHOTS, htmx_idle, login

KEY = "prompts_v2"


@pytest.fixture
def fleet_settings(settings):
    settings.SELCONTROL_ACK_TIMEOUT_SECONDS = 3
    settings.SELCONTROL_FLEET_LIVE_SECONDS = 5
    return settings


@pytest.fixture
def bots(console, bot_token, tmp_path, fleet_settings):  # noqa: F811
    started: list[SelControl] = []

    def start(instance_id: str, **kw) -> SelControl:
        client = SelControl(
            console,
            bot_token,
            instance_id=instance_id,
            report_interval=1.0,
            config_cache=tmp_path / f"{instance_id}.json",
            spool_dir=None,
            **kw,
        )
        started.append(client)
        assert client.wait_until_synced(10)
        for i in range(200):
            client.variant(KEY, str(10**17 + i))
        return client

    services.update_rollout(KEY, actor=SYSTEM, reason="Beta at 20%", enabled=True, percentage=20)
    yield start
    for client in started:
        client.close(timeout=2)


def _shot(page: Page, name: str) -> None:
    page.locator(".fleet-card").screenshot(path=str(SCREENSHOTS / f"{name}.png"), caret="initial")


def _rollback(page: Page, reason: str) -> None:
    htmx_idle(page)
    page.evaluate("window.__not_reloaded = true")
    page.get_by_role("link", name="Emergency rollback").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("textarea").fill(reason)
    dialog.get_by_role("button", name="Roll back now").click()


@pytest.mark.e2e
def test_emergency_rollback__three_bots__line_reaches_three_of_three(page: Page, alice, bots):
    for name in ("sel-shard-0", "sel-shard-1", "sel-shard-2"):
        bots(name)
    login(page, alice)
    page.goto(f"/rollouts/{KEY}/")
    fleet = page.locator("#fleet")
    expect(fleet.locator("tr.fleet-current")).to_have_count(3, timeout=10_000)
    expect(page.locator("#fleet-srm")).to_contain_text("decisions")
    _shot(page, "fleet-normal")

    _rollback(page, "answers lost Sel's voice")
    line = page.locator("#ack-line")
    expect(line).to_contain_text("Emergency rollback")
    expect(line).to_contain_text("acknowledged by 3 of 3", timeout=10_000)
    expect(line).to_have_attribute("data-acked", "3")
    # the table is its own poll of the panel: under load it can come a poll after the line
    expect(fleet.locator("tr.fleet-current")).to_have_count(3, timeout=10_000)
    assert page.evaluate("window.__not_reloaded === true")
    _shot(page, "fleet-rollback-acked")


@pytest.mark.e2e
def test_emergency_rollback__one_bot_frozen__flagged_red(page: Page, alice, bots):
    bots("sel-shard-0")
    bots("sel-shard-1")
    bots("sel-shard-2-frozen", push=False, poll_interval=3600)  # never syncs again
    login(page, alice)
    page.goto(f"/rollouts/{KEY}/")
    fleet = page.locator("#fleet")
    expect(fleet.locator("tr.fleet-current")).to_have_count(3, timeout=10_000)

    _rollback(page, "answers lost Sel's voice")
    line = page.locator("#ack-line")
    expect(line).to_contain_text("acknowledged by 2 of 3", timeout=10_000)
    frozen = fleet.locator('tr[data-instance="sel-shard-2-frozen"]')
    expect(frozen).to_have_attribute("data-state", "overdue", timeout=10_000)
    expect(frozen).to_contain_text("not acknowledged")
    expect(line).to_contain_text("1 instance not acknowledged within 3 s")
    assert page.evaluate("window.__not_reloaded === true")
    _shot(page, "fleet-rollback-frozen")
