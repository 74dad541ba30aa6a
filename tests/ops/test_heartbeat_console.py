"""The rollout page shows a stopped worker or beat (issue 15, item 9): without them guardrails are
not evaluated, so no automatic rollback and no alert happen."""

from __future__ import annotations

import re
import time

import pytest

from selcontrol import heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def watched(settings):
    """A deployment with a broker: a worker and beat are expected."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    settings.CELERY_TASK_ALWAYS_EAGER = False


def test_rollout_page__worker_heartbeat_ten_minutes_old__worker_stopped_with_its_age(
    viewer_client, rollout, watched
):
    heartbeat.beat("worker", at=time.time() - 600)
    heartbeat.beat("beat")
    before = heartbeat.status()["worker"].age
    page = viewer_client.get(f"/rollouts/{rollout.key}/").content.decode()
    after = heartbeat.status()["worker"].age
    assert "worker stopped</span>" in page and "beat stopped" not in page
    assert "no automatic rollback and no alert" in page
    # the page's age is read while it renders: between the ages read before and after it
    shown = re.search(r"last worked (\d+) s ago", page)
    assert shown and 600 <= before <= after < 660
    assert round(before) <= int(shown.group(1)) <= round(after)


def test_rollout_page__both_heartbeats_fresh__nothing_stopped(viewer_client, rollout, watched):
    heartbeat.beat("worker")
    heartbeat.beat("beat")
    page = viewer_client.get(f"/rollouts/{rollout.key}/").content.decode()
    assert "stopped</span>" not in page and "background-stopped" not in page


def test_rollout_page__tasks_in_process__no_heartbeat_expected(viewer_client, rollout):
    page = viewer_client.get(f"/rollouts/{rollout.key}/").content.decode()
    assert "stopped</span>" not in page


def test_metrics__heartbeats__ages_match_the_stored_timestamps(client, watched):
    heartbeat.beat("worker", at=time.time() - 600)
    heartbeat.beat("beat", at=time.time() - 5)
    text = client.get("/metrics").content.decode()
    ages = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("selcontrol_heartbeat_age_seconds{")
    }
    assert set(ages) == {"worker", "beat"}
    assert 600 <= ages["worker"] < 660 and 5 <= ages["beat"] < 65
