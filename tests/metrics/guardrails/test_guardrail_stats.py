"""The guardrails' pure part: the sequential test and the per-metric verdicts (no database)."""

from __future__ import annotations

import random

from metrics import histogram
from metrics.guardrails import rules as g

V1, V2 = "v1", "v2_full"


def arm(variant: str, **figures) -> g.Arm:
    return g.Arm(variant=variant, **figures)


def hist(latencies: list[float]) -> dict[int, int]:
    out: dict[int, int] = {}
    for ms in latencies:
        b = histogram.bucket_of(ms)
        out[b] = out.get(b, 0) + 1
    return out


def test_msprt__same_rates_many_replies__does_not_reject():
    result = g.msprt(100, 10_000, 100, 10_000, tau=0.02, alpha=0.05)
    assert not result.rejected
    assert result.p_value == 1.0 or result.p_value > 0.05


def test_msprt__v2_error_rate_four_times_v1__rejects():
    result = g.msprt(10, 1000, 40, 1000, tau=0.02, alpha=0.05)
    assert result.rejected
    assert result.p_value < 0.05


def test_msprt__v2_better__never_rejects_one_sided():
    result = g.msprt(40, 1000, 10, 1000, tau=0.02, alpha=0.05)
    assert result.estimate < 0
    assert not result.rejected
    assert result.p_value == 1.0  # no evidence that v2 is worse


def test_msprt__increase_within_margin__does_not_reject():
    # +5% relative on a 10% rate with 20k replies each: inside "up more than 10%"
    result = g.msprt(2000, 20_000, 2100, 20_000, margin=0.10, tau=0.02, alpha=0.05)
    assert not result.rejected
    assert result.estimate < 0


def test_evaluate_rate__below_the_floor__is_insufficient():
    spec = g.RuleSpec(g.ERROR_RATE, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=500, errors=5), V2: arm(V2, responses=150, errors=40)},
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.INSUFFICIENT
    assert "150 of 200" in verdict.summary


def test_evaluate_rate__estimate_above_but_not_significant__is_warning():
    spec = g.RuleSpec(g.ERROR_RATE, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=400, errors=4), V2: arm(V2, responses=400, errors=6)},
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.WARNING
    assert verdict.numbers["rate_treatment"] == 0.015


def test_evaluate_rate__clear_regression__is_breached_with_numbers():
    spec = g.RuleSpec(g.ERROR_RATE, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=2000, errors=20), V2: arm(V2, responses=2000, errors=120)},
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.BREACHED
    assert "6.0% vs v1 1.0%" in verdict.summary
    assert verdict.numbers["p_value"] < 0.05


def test_evaluate__two_treatment_variants__alpha_is_split():
    spec = g.RuleSpec(g.ERROR_RATE, min_samples=10, alpha=0.05)
    verdict = g.evaluate(
        spec,
        {
            V1: arm(V1, responses=2000, errors=20),
            V2: arm(V2, responses=2000, errors=20),
            "v2_simplified": arm("v2_simplified", responses=2000, errors=20),
        },
        control=V1,
        treatments=[V2, "v2_simplified"],
    )
    assert verdict.numbers["alpha"] == 0.025


def test_evaluate__running_p_value_below_alpha__stays_breached():
    spec = g.RuleSpec(g.ERROR_RATE, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=400, errors=4), V2: arm(V2, responses=400, errors=6)},
        control=V1,
        treatments=[V2],
        p_min={V2: 0.001},
    )
    assert verdict.status == g.BREACHED


def test_evaluate_latency__v2_twice_as_slow__is_breached():
    rng = random.Random(1)
    v1 = hist([rng.lognormvariate(7.0, 0.4) for _ in range(1500)])
    v2 = hist([2.2 * rng.lognormvariate(7.0, 0.4) for _ in range(1500)])
    spec = g.RuleSpec(g.LATENCY_P95, threshold=1.5)
    verdict = g.evaluate(
        spec,
        {
            V1: arm(V1, responses=1500, latency_hist=v1),
            V2: arm(V2, responses=1500, latency_hist=v2),
        },
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.BREACHED
    assert verdict.numbers["p95_treatment_ms"] > 1.5 * verdict.numbers["p95_control_ms"]


def test_evaluate_latency__same_distribution__is_ok():
    rng = random.Random(2)
    v1 = hist([rng.lognormvariate(7.0, 0.4) for _ in range(1500)])
    v2 = hist([rng.lognormvariate(7.0, 0.4) for _ in range(1500)])
    spec = g.RuleSpec(g.LATENCY_P95, threshold=1.5)
    verdict = g.evaluate(
        spec,
        {
            V1: arm(V1, responses=1500, latency_hist=v1),
            V2: arm(V2, responses=1500, latency_hist=v2),
        },
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.OK


def test_evaluate_cost__projection_over_budget__is_breached():
    # 600 replies in 2 h, half v2 at $0.006: 7200/day x $0.006 = $43.20 > $40
    spec = g.RuleSpec(g.DAILY_COST, threshold=40.0, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=300, cost_usd=0.45), V2: arm(V2, responses=300, cost_usd=1.8)},
        control=V1,
        treatments=[V2],
        window_hours=2.0,
    )
    assert verdict.status == g.BREACHED
    assert verdict.numbers["projected_daily_usd"] == 43.2


def test_evaluate_cost__projection_at_85_percent_of_budget__is_warning():
    spec = g.RuleSpec(g.DAILY_COST, threshold=50.0, min_samples=200)
    verdict = g.evaluate(
        spec,
        {V1: arm(V1, responses=300, cost_usd=0.45), V2: arm(V2, responses=300, cost_usd=1.8)},
        control=V1,
        treatments=[V2],
        window_hours=2.0,
    )
    assert verdict.status == g.WARNING


def test_evaluate__no_treatment_traffic__is_insufficient():
    verdict = g.evaluate(
        g.RuleSpec(g.CORRECTIONS, threshold=0.1),
        {V1: arm(V1, responses=900)},
        control=V1,
        treatments=[V2],
    )
    assert verdict.status == g.INSUFFICIENT
