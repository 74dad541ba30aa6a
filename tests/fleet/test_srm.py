"""The sample-ratio check's pure parts: the chi-squared survival function and the tests on
simulated traffic (no database)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from rollout import fleet
from selcontrol_client import assignment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _rule(**kw) -> assignment.Rule:
    base = dict(key="prompts_v2", enabled=True, percentage=20, simplified_percentage=25)
    base.update(kw)
    return assignment.Rule(**base)


def _q_integer(a: int, x: float) -> float:
    return math.exp(-x) * sum(x**k / math.factorial(k) for k in range(a))


@pytest.mark.parametrize("a", [1, 2, 3, 5, 10, 30])
@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 2.5, 7.0, 20.0, 60.0])
def test_regularized_gamma_q__integer_a__matches_closed_form(a, x):
    # Q(a, x) is the chi-squared survival function at 2x with 2a degrees of freedom
    assert fleet.chi2_sf(2 * x, 2 * a) == pytest.approx(_q_integer(a, x), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("x", [0.001, 0.2, 1.0, 3.0, 9.0, 25.0])
def test_regularized_gamma_q__half_a__matches_erfc(x):
    assert fleet.chi2_sf(2 * x, 1) == pytest.approx(math.erfc(math.sqrt(x)), rel=1e-10)


@pytest.mark.parametrize(
    ("statistic", "df", "p"),
    [
        (3.841458820694124, 1, 0.05),
        (10.827566170662733, 1, 0.001),
        (5.991464547107979, 2, 0.05),
        (13.815510557964274, 2, 0.001),
        (16.26623619623813, 3, 0.001),
        (0.0, 2, 1.0),
    ],
)
def test_chi2_sf__critical_values__give_their_p(statistic, df, p):
    assert fleet.chi2_sf(statistic, df) == pytest.approx(p, rel=1e-9)


def _traffic(n_channels: int = 400, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    # very uneven traffic per channel, as on Discord (a few busy channels, many quiet ones)
    return {
        str(10**17 + rng.randrange(10**17)): int(rng.paretovariate(1.2) * 5)
        for _ in range(n_channels)
    }


def _simulate(rule: assignment.Rule, traffic: dict[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for channel, n in traffic.items():
        variant, _ = assignment.decide(rule, channel, NOW)
        counts[variant] = counts.get(variant, 0) + n
    return counts


def test_srm_decisions__traffic_follows_the_rule__passes():
    rule, traffic = _rule(), _traffic()
    result = fleet.srm_test(
        "decisions", _simulate(rule, traffic), fleet.rule_shares(rule, traffic, NOW)
    )
    assert result.verdict == "ok" and result.p_value > 0.5


def test_srm_decisions__bot_on_a_stale_percentage__fails():
    rule, traffic = _rule(percentage=20), _traffic()
    stale = _simulate(_rule(percentage=5), traffic)
    result = fleet.srm_test("decisions", stale, fleet.rule_shares(rule, traffic, NOW))
    assert result.verdict == "mismatch" and result.p_value < fleet.SRM_THRESHOLD


def test_srm_decisions__random_draw_per_message_at_the_percentage__passes():
    rng = random.Random(3)
    rule = _rule(simplified_percentage=0)
    observed: dict[str, int] = {}
    for _ in range(20_000):
        variant = "v2_full" if rng.random() < 0.2 else "v1"
        observed[variant] = observed.get(variant, 0) + 1
    result = fleet.srm_test("decisions", observed, fleet.nominal_shares(rule))
    assert result.verdict == "ok"


def test_srm_decisions__percentage_shares_on_uneven_traffic__would_be_wrong():
    """Why the expected share comes from the channels' traffic: a rule-following bot fails a
    naive test against the bare percentages when a few busy channels carry most messages."""
    rule, traffic = _rule(simplified_percentage=0), _traffic(n_channels=60, seed=11)
    observed = _simulate(rule, traffic)
    naive = fleet.srm_test("decisions", observed, fleet.nominal_shares(rule))
    fair = fleet.srm_test("decisions", observed, fleet.rule_shares(rule, traffic, NOW))
    assert naive.verdict == "mismatch" and fair.verdict == "ok"


def test_reply_consistency__replies_follow_the_rule__no_wrong_replies():
    rule, traffic = _rule(overrides={"42": assignment.Override("v2_full", None)}), _traffic()
    traffic["42"] = 30
    replies = [(c, assignment.decide(rule, c, NOW)[0], n) for c, n in traffic.items() if n]
    observed, expected, wrong, channels = fleet.reply_consistency(rule, replies, NOW)
    result = fleet.srm_test(
        "replies", observed, {v: n / sum(expected.values()) for v, n in expected.items()}
    )
    assert (wrong, channels, result.verdict) == (0, 0, "ok")


def test_reply_consistency__override_ignored_by_the_bot__fails():
    rule = _rule(
        percentage=0, overrides={str(c): assignment.Override("v2_full", None) for c in range(30)}
    )
    replies = [(str(c), "v1", 10) for c in range(60)]  # the bot ignores the overrides
    observed, expected, wrong, channels = fleet.reply_consistency(rule, replies, NOW)
    result = fleet.srm_test(
        "replies", observed, {v: n / sum(expected.values()) for v, n in expected.items()}
    )
    assert (wrong, channels, result.verdict) == (300, 30, "mismatch")


def test_srm_test__few_observations__no_verdict():
    result = fleet.srm_test("decisions", {"v1": 3, "v2_full": 1}, {"v1": 0.8, "v2_full": 0.2})
    assert result.verdict == "not enough data" and result.p_value is None


def test_srm_test__kill_switch_and_all_control__passes():
    rule = _rule(enabled=False)
    result = fleet.srm_test("decisions", {"v1": 500}, fleet.nominal_shares(rule))
    assert result.verdict == "ok"


def test_srm_test__treatment_under_kill_switch__mismatch():
    rule = _rule(enabled=False)
    result = fleet.srm_test("decisions", {"v1": 500, "v2_full": 40}, fleet.nominal_shares(rule))
    assert result.verdict == "mismatch" and result.p_value == 0.0


def test_exposure_deltas__resent_totals__count_once():
    first = fleet.exposure_deltas({}, {"5|k|v1": 10})
    again = fleet.exposure_deltas({"5|k|v1": 10}, {"5|k|v1": 10})
    later = fleet.exposure_deltas({"5|k|v1": 10}, {"5|k|v1": 25, "6|k|v1": 2})
    assert (first, again, later) == ({"5|k|v1": 10}, {}, {"5|k|v1": 15, "6|k|v1": 2})
