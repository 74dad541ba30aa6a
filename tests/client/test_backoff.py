"""The one backoff (selcontrol_client.events.backoff_delay), used by the client's config sync,
instance reports and event sender, and by the server's alert webhook and traffic simulator."""

from __future__ import annotations

import random

import pytest

from selcontrol_client.events import backoff_delay


@pytest.mark.parametrize(
    ("failures", "kwargs", "delay"),
    [
        (1, {"base": 1.0}, 1.0),
        (3, {"base": 1.0}, 4.0),  # the alert webhook: 1 s, 2 s, 4 s ...
        (20, {"base": 0.5, "cap": 30.0}, 30.0),
        (20, {"base": 0.5, "max_doublings": 5}, 16.0),
        (3, {"base": 0.5, "cap": 1.5, "max_doublings": 5}, 1.5),
    ],
)
def test_backoff_delay__without_jitter__doubles_up_to_the_cap(failures, kwargs, delay):
    assert backoff_delay(failures, **kwargs) == delay


def test_backoff_delay__with_jitter__between_half_and_all_of_the_delay():
    random.seed(17)
    delays = [backoff_delay(4, base=0.5, cap=30.0, jitter=True) for _ in range(500)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 1.5  # spread out, not one value
