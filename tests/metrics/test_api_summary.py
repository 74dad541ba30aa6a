"""GET /api/v1/rollouts/<key>/summary: the contract's shape, exact counts, parameters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from metrics import rollups
from metrics.ingest.intake import record_events

from .conftest import T0, followup, iso, reaction, response

pytestmark = pytest.mark.django_db
URL = "/api/v1/rollouts/prompts_v2/summary"
RANGE = {"since": iso(T0 - timedelta(hours=1)), "until": iso(T0 + timedelta(hours=3))}


def _traffic():
    events = []
    for i in range(30):
        v2 = i % 3 == 0
        events.append(
            response(
                f"s{i}",
                ts=T0 + timedelta(minutes=5 * i),
                variant="v2_full" if v2 else "v1",
                input_tokens=1750 if v2 else 500,
                output_tokens=300,
                latency_ms=1500 if v2 else 1000,
                error="rate_limited" if i == 4 else None,
            )
        )
    events += [reaction("m-s0", "👍"), reaction("m-s1", "👎"), followup("m-s2", "actually no")]
    record_events(events)


def test_summary__contract_shape__every_key_present(bot):
    _traffic()
    body = bot.get(URL, **RANGE).json()
    assert set(body) == {"rollout", "since", "until", "variants"}
    variant = body["variants"]["v1"]
    for key in ("responses", "errors", "input_tokens", "output_tokens", "cost_usd", "corrections"):
        assert isinstance(variant[key], int | float)
    assert set(variant["latency_ms"]) == {"p50", "p95", "p99"}
    assert variant["reactions"] == {"positive": 0, "negative": 1}
    assert variant["reviews"] == {"graded": 0, "hallucinations": 0}


def test_summary__exact_counts_and_sums__before_and_after_rollup(bot):
    _traffic()
    before = bot.get(URL, **RANGE).json()
    rollups.catch_up()
    after = bot.get(URL, **RANGE).json()
    assert before == after
    v1, v2 = after["variants"]["v1"], after["variants"]["v2_full"]
    assert (v1["responses"], v2["responses"]) == (20, 10)
    assert (v1["input_tokens"], v2["input_tokens"]) == (10_000, 17_500)
    assert (v1["errors"], v1["errors_by_code"]) == (1, {"rate_limited": 1})
    assert v1["corrections"] == 1 and v2["reactions"]["positive"] == 1
    assert v2["cost_usd"] == pytest.approx(10 * (1750 * 3 + 300 * 15) / 1e6)
    assert abs(v2["latency_ms"]["p50"] - 1500) / 1500 < 0.025


def test_summary__new_events_after_rollup__visible_at_once(bot):
    _traffic()
    rollups.catch_up()
    record_events([response("fresh", ts=T0 + timedelta(minutes=1))])
    assert bot.get(URL, **RANGE).json()["variants"]["v1"]["responses"] == 21


def test_summary__no_params__last_24_hours(bot):
    from django.utils import timezone

    record_events(
        [
            response("now", ts=timezone.now() - timedelta(minutes=5)),
            response("old", ts=timezone.now() - timedelta(days=2)),
        ]
    )
    assert bot.get(URL).json()["variants"]["v1"]["responses"] == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since 'yesterday' is not an RFC 3339"),
        ({"until": "2026-03-02T10:00:00"}, "until '2026-03-02T10:00:00' has no time zone"),
        ({"since": iso(T0), "until": iso(T0)}, "since must be earlier than until"),
        ({"since": iso(T0 - timedelta(days=800)), "until": iso(T0)}, "more than 400 days"),
    ],
)
def test_summary__bad_params__400_naming_parameter(bot, params, message):
    answer = bot.get(URL, **params)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_summary__unknown_rollout__404(bot):
    assert bot.get("/api/v1/rollouts/nope/summary").status_code == 404


def test_summary__events_only_token__403(make_token):
    from tests.conftest import ApiClient

    assert ApiClient(make_token("events:write")).get(URL).status_code == 403
