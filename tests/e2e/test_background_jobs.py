"""A stopped Celery worker on the rollout page in Chromium (issue 15, item 9): the guardrail panel
says so in red, with how long ago it last worked.
Screenshot: docs/screenshots/console-worker-stopped.png."""

from __future__ import annotations

import re
import time

import pytest

from selcontrol import heartbeat

from .conftest import htmx_idle, login, screenshot

pytestmark = pytest.mark.e2e


def test_rollout_page__worker_stopped__red_pill_and_sentence(page, console, alice, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    started = time.time()
    heartbeat.beat("worker", at=started - 312)
    heartbeat.beat("beat")
    login(page, alice)
    page.goto("/rollouts/prompts_v2/")
    htmx_idle(page)
    pill = page.locator(".guardrails-panel .pill.bad", has_text="worker stopped")
    pill.wait_for()
    sentence = page.locator(".background-stopped").inner_text()
    assert "no automatic rollback and no alert" in sentence
    age = re.search(r"no alert: the worker last worked (\d+) s ago", sentence)
    assert age, sentence
    # 312 s, plus the time the sign-in and the page took (seconds on a loaded machine)
    assert 312 <= int(age.group(1)) <= 312 + time.time() - started + 1, sentence
    assert page.locator(".guardrails-panel .pill.bad", has_text="beat stopped").count() == 0
    page.locator(".guardrails-panel").scroll_into_view_if_needed()
    screenshot(page, "console-worker-stopped", full_page=False)
