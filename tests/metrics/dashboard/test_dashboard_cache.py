"""The dashboard's derivations kept in Django's cache by the window's fingerprint (issue 16: the
speed goal; metrics.dashboard.series.cached): a page, chart figure or comparison served from the
cache is byte for byte the one derived afresh, a fresh web process serves it from the shared cache
(Redis) without deriving any hour, and an hour the rollup job rewrites shows its new figures on
the very next view."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import caches
from django.urls import reverse

from metrics import histogram, rollups
from metrics.dashboard import series
from metrics.ingest.intake import record_events
from metrics.models import HourlyRollup
from selcontrol.cache import ResilientRedisCache
from tests.metrics.conftest import response
from tests.metrics.dashboard.test_dashboard_cost import NOW, fortnight  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fortnight")]

HOUR = datetime(2026, 3, 10, 12, tzinfo=UTC)  # inside a whole day of the fortnight
BY_HOUR = {"range": "30d", "granularity": "hour"}
DUMMY = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CSRF = re.compile(r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]+')


def _page(client, at: datetime = NOW, **query) -> str:
    with time_machine.travel(at, tick=False):
        answer = client.get(reverse("metrics:dashboard", args=["prompts_v2"]), query or BY_HOUR)
    assert answer.status_code == 200
    return CSRF.sub(r"\1-", answer.content.decode())


def _comparison(client, at: datetime = NOW) -> dict:
    with time_machine.travel(at, tick=False):
        answer = client.get(
            reverse("metrics:comparison-data", args=["prompts_v2", "json"]), BY_HOUR
        )
    assert answer.status_code == 200
    return answer.json()


def _figure(page: str, chart: str) -> dict:
    block = re.search(
        rf'<script type="application/json" id="figure-{chart}">(.*?)</script>', page, re.S
    )
    assert block, chart
    return json.loads(block.group(1))


def _point(page: str, chart: str, trace: str, hour: datetime):
    figure = _figure(page, chart)
    data = next(t for t in figure["data"] if t["name"] == trace)
    return data["y"][data["x"].index(hour.isoformat())]


def _forget_in_process() -> None:
    """What a fresh web process has not: derived hours, per-channel day sums."""
    series._SLIM_CACHE.clear()
    rollups._CHANNEL_DAYS_CACHE.clear()


def _derived_hours() -> int:
    return sum("_metrics" in slim for slim in series._SLIM_CACHE.values())


@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_dashboard__by_hour_viewed_again__served_from_cache_byte_identical(
    viewer_client, settings, backend
):
    if backend == "locmem":  # the quick start's cache (no REDIS_URL)
        settings.CACHES = LOCMEM
    else:
        assert isinstance(caches["default"], ResilientRedisCache)
    first = _page(viewer_client)
    _forget_in_process()
    again = _page(viewer_client)
    assert _derived_hours() == 0  # every figure came from the cache
    settings.CACHES = DUMMY  # nothing kept: every figure derived afresh
    fresh = _page(viewer_client)
    assert _derived_hours() > 24 * 7
    assert again == first == fresh
    assert _point(first, "responses", "v1", HOUR) == 1


def test_dashboard__fresh_process__figures_from_redis_without_deriving_an_hour(
    viewer_client,
):
    assert isinstance(caches["default"], ResilientRedisCache)
    first = _page(viewer_client)
    comparison = _comparison(viewer_client)
    keys = caches["default"]._cache.get_client().keys("*metrics:derived:*")
    assert len(keys) == 2  # the page's figures and the comparison (shared by both views)
    _forget_in_process()
    assert _page(viewer_client) == first
    assert _comparison(viewer_client) == comparison
    assert _derived_hours() == 0
    assert rollups._CHANNEL_DAYS_CACHE == {}  # the comparison's channel sums not read either


def test_comparison_json__from_cache__equals_derived_afresh(viewer_client, settings):
    cached = [_comparison(viewer_client) for _ in range(2)]
    settings.CACHES = DUMMY
    assert cached[0] == cached[1] == _comparison(viewer_client)


def test_dashboard__hour_rewritten_by_the_rollup_job__next_view_shows_its_new_figures(
    viewer_client,
):
    before = _page(viewer_client)
    compared = {r["metric"]: r for r in _comparison(viewer_client)["rows"]}
    later = NOW + timedelta(minutes=10)  # the same 30 days, hour by hour
    with time_machine.travel(later, tick=False):
        record_events([response(ts=HOUR + timedelta(minutes=30)) for _ in range(3)])
        rollups.catch_up()
    after = _page(viewer_client, later)
    assert _point(before, "responses", "v1", HOUR) == 1
    assert _point(after, "responses", "v1", HOUR) == 4
    n = {r["metric"]: r for r in _comparison(viewer_client, later)["rows"]}["error_rate"]
    assert n["n_control"] == compared["error_rate"]["n_control"] + 3


def _restamp(row: HourlyRollup, hist: dict[str, int], at: datetime) -> None:
    """Rewrite one hourly row as the rollup job would: histogram, stamped ranks, computed_at."""
    HourlyRollup.objects.filter(pk=row.pk).update(
        latency_hist=hist,
        latency_ranks=histogram.stamped_ranks(hist, rollups.epoch_micros(at)),
        computed_at=at,
    )


def test_dashboard__hour_rewritten_with_only_its_latencies_changed__next_view_draws_them(
    viewer_client,
):
    """Same counts and sums, other latency buckets and a new stamp: the slim hour's histogram
    is not even read (its ranks are), so only the stamped ranks tell the views apart."""
    row = HourlyRollup.objects.get(hour=HOUR, variant="v1")
    before = _page(viewer_client)
    slow = {str(histogram.bucket_of(9_000.0)): sum(row.latency_hist.values())}
    _restamp(row, slow, row.computed_at + timedelta(seconds=1))
    after = _page(viewer_client)
    assert _point(before, "latency", "v1 p50", HOUR) == series._bucket_value(
        histogram.ranks(row.latency_hist).split(",")[0]
    )
    assert _point(after, "latency", "v1 p50", HOUR) == series._bucket_value(
        histogram.ranks(slow).split(",")[0]
    )
    assert _point(after, "latency", "v1 p50", HOUR) != _point(before, "latency", "v1 p50", HOUR)


def test_window__only_an_hours_computed_at_changes__fingerprint_changes(rollout):
    """The cache key follows the rollup rows' stamps: a row rewritten with the same figures
    (another worker recomputing the hour) is another key, whatever it holds."""
    until = rollups.hour_of(NOW) + timedelta(hours=1)
    since = until - timedelta(days=30)
    with time_machine.travel(NOW, tick=False):
        first = series.load_window(rollout, since, until, "hour", now=NOW).fingerprint
        again = series.load_window(rollout, since, until, "hour", now=NOW).fingerprint
        row = HourlyRollup.objects.get(hour=HOUR, variant="v1")
        _restamp(row, row.latency_hist, row.computed_at + timedelta(seconds=1))
        restamped = series.load_window(rollout, since, until, "hour", now=NOW).fingerprint
        by_day = series.load_window(rollout, since, until, "day", now=NOW).fingerprint
    assert first == again
    assert restamped not in (first, None)
    assert by_day not in (first, restamped)
