"""rollout.fleet.health_of: the first problem an instance report shows on the fleet panel."""

from __future__ import annotations

import pytest

from rollout.fleet import health_of
from rollout.models import Instance


@pytest.mark.parametrize(
    ("events", "error", "health"),
    [
        ({"sent": 5}, "", "ok"),
        ({"dropped": 2, "quarantined": 1}, "", "2 events dropped"),
        ({"quarantined": 1}, "", "1 events the server failed on set aside (quarantine)"),
        ({"spool_pending": 7}, "", "7 events waiting on disk"),
        ({"quarantined": 1}, "HTTP 500", "sync failing: HTTP 500"),
    ],
)
def test_health_of__report_counters__first_problem_named(events, error, health):
    assert health_of(Instance(events=events, last_sync_error=error)) == health
