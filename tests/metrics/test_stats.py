"""metrics.stats against textbook values (Newcombe 1998; Katz; hand-computed Mann-Whitney)."""

from __future__ import annotations

import math

import pytest

from metrics import histogram, stats


def r4(pair):
    return tuple(round(x, 4) for x in pair)


# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Stat Med 17:857-872, Table I, method 3 (Wilson score).
@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson__newcombe_1998_examples__match_table(k, n, expected):
    assert r4(stats.wilson(k, n)) == expected


def test_wilson__all_successes__upper_bound_is_one():
    assert stats.wilson(29, 29)[1] == 1.0


def test_wilson__no_trials__whole_unit_interval():
    assert stats.wilson(0, 0) == (0.0, 1.0)


def test_wilson__k_above_n__refused():
    with pytest.raises(ValueError):
        stats.wilson(5, 4)


# Newcombe RG (1998), "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Stat Med 17:873-890, Table II, method 10 (hybrid score).
@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "expected"),
    [
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (6, 7, 2, 7, (0.0582, 0.8062)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
        (0, 10, 0, 20, (-0.1611, 0.2775)),
        (0, 10, 0, 10, (-0.2775, 0.2775)),
        (10, 10, 0, 20, (0.6791, 1.0)),
        (10, 10, 0, 10, (0.6075, 1.0)),
    ],
)
def test_newcombe_difference__newcombe_1998_examples__match_table(k1, n1, k2, n2, expected):
    d, lo, hi = stats.newcombe_difference(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert r4((lo, hi)) == expected


def test_risk_ratio__katz_log_interval__matches_formula():
    # 20/100 vs 10/100: RR 2, se = sqrt(1/20 - 1/100 + 1/10 - 1/100) = sqrt(0.13)
    ratio, lo, hi, se = stats.risk_ratio(20, 100, 10, 100)
    assert ratio == pytest.approx(2.0)
    assert se == pytest.approx(math.sqrt(0.13))
    # 2 exp(-+1.96 x 0.3606) = 0.987, 4.054
    assert (round(lo, 3), round(hi, 3)) == (0.987, 4.054)


def test_risk_ratio__zero_count__stays_finite_with_half_added():
    ratio, lo, hi, _ = stats.risk_ratio(0, 50, 5, 50)
    assert ratio == pytest.approx((0.5 / 51) / (5.5 / 51))
    assert 0 < lo < hi < math.inf


def test_ratio_mean__hourly_clusters__linearised_variance():
    # R = 60/30 = 2; residuals y - 2n: 0, 2, -2 -> ss 8; var = 3/2 * 8 / 30^2
    mean, se, n = stats.ratio_mean([(10, 20), (10, 22), (10, 18)])
    assert (mean, n) == (2.0, 30)
    assert se == pytest.approx(math.sqrt(1.5 * 8) / 30)


def test_ratio_mean__one_hour__no_standard_error():
    assert stats.ratio_mean([(10, 20)]) == (2.0, None, 10)


def test_mann_whitney_binned__ties__matches_hand_count():
    # control 1,1,1,2,2; treatment 2,3,3,3,3 -> U(treatment larger) = 1*(3 + 2/2) + 4*5 = 24
    result = stats.mann_whitney_binned({1: 3, 2: 2}, {2: 1, 3: 4})
    assert result["u"] == 24
    assert result["prob_faster"] == pytest.approx(1 / 25)
    # tie-corrected variance: 25/12 * (11 - (3^3-3 + 3^3-3 + 4^3-4)/(10*9))
    var = 25 / 12 * (11 - (24 + 24 + 60) / 90)
    assert result["z"] == pytest.approx((24 - 12.5) / math.sqrt(var))


def test_mann_whitney_binned__identical_histograms__no_difference():
    result = stats.mann_whitney_binned({5: 10, 6: 10}, {5: 10, 6: 10})
    assert result["z"] == 0 and result["p_value"] == pytest.approx(1.0)


def test_quantile_interval__large_sample__within_neighbouring_buckets():
    hist = histogram.merge([{histogram.bucket_of(100 + i % 100): 1} for i in range(10_000)])
    estimate, lo, hi = stats.quantile_interval(hist, 0.5)
    assert lo <= estimate <= hi
    assert 140 <= estimate <= 160 and hi / lo < 1.25


def test_verdict__interval_above_zero__direction_decides():
    assert stats.verdict(0.01, 0.2, stats.HIGHER) == stats.BETTER
    assert stats.verdict(0.01, 0.2, stats.LOWER) == stats.WORSE
    assert stats.verdict(-0.2, -0.01, stats.LOWER) == stats.BETTER
    assert stats.verdict(-0.1, 0.1, stats.LOWER) == stats.UNKNOWN


def test_more_needed__standard_two_sample_size__matches_textbook():
    # Detecting p 0.10 vs 0.15 needs ~686 per group (80% power, 5% two-sided; Fleiss without
    # continuity correction). With 100 per group now, the se of the difference is:
    se = math.sqrt(0.10 * 0.90 / 100 + 0.15 * 0.85 / 100)
    more = stats.more_needed(0.05, se, 200)
    assert 2 * 680 - 200 <= more <= 2 * 690 - 200


def test_more_needed__no_effect__none():
    assert stats.more_needed(0.0, 0.1, 100) is None


def test_compare_rates__clear_drop_in_errors__better():
    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (200, 2000), (100, 2000))
    assert row.verdict == stats.BETTER
    assert row.relative == pytest.approx(-0.5)
    assert row.relative_hi < 0 and row.difference_hi < 0


def test_compare_rates__small_samples__not_yet_known_with_more_needed():
    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (10, 100), (8, 100))
    assert row.verdict == stats.UNKNOWN
    assert row.more_needed > 1000


@pytest.mark.parametrize(
    ("control", "treatment", "expected"),
    [
        ((6, 6), (3, 3), 0.0),  # 100% vs 100% (was -14.3% with the 0.5 in the point)
        ((1, 3), (0, 3), -1.0),  # 33% vs 0% (was -33%)
        ((2, 10), (0, 40), -1.0),
        ((5, 5), (4, 8), -0.5),
    ],
)
def test_compare_rates__zero_cells__relative_is_the_plain_ratio_inside_its_interval(
    control, treatment, expected
):
    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, control, treatment)
    assert row.relative == pytest.approx(expected)
    assert row.relative == pytest.approx(row.treatment / row.control - 1)
    assert row.relative_lo <= row.relative <= row.relative_hi


def test_compare_rates__none_on_control__relative_unbounded_above():
    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (0, 30), (2, 30))
    assert row.relative == math.inf and row.relative_hi == math.inf
    assert -1 < row.relative_lo < 0


def test_compare_rates__no_treatment_replies__not_yet_known():
    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (10, 100), (0, 0))
    assert row.verdict == stats.UNKNOWN and row.treatment is None


def test_compare_means__tokens_tripled__worse_when_lower_is_better():
    control = [(100, 100 * 500 + (i % 3) * 300) for i in range(24)]
    treatment = [(50, 50 * 1750 + (i % 3) * 300) for i in range(24)]
    row = stats.compare_means(
        "input_tokens", "Input tokens", "tokens", stats.LOWER, control, treatment
    )
    assert row.verdict == stats.WORSE
    assert row.relative == pytest.approx(2.5, rel=0.01)
    assert row.relative_lo < row.relative < row.relative_hi


def test_compare_percentile__same_distribution__not_yet_known():
    hist = {histogram.bucket_of(200 + i): 5 for i in range(0, 800, 7)}
    row = stats.compare_percentile("latency_p95", "p95", 0.95, hist, hist)
    assert row.verdict == stats.UNKNOWN
    assert row.relative == 0 and row.relative_lo < 0 < row.relative_hi


def test_compare_percentile__twice_as_slow__worse():
    fast = histogram.merge([{histogram.bucket_of(100 + i % 50): 1} for i in range(5000)])
    slow = histogram.merge([{histogram.bucket_of(200 + i % 100): 1} for i in range(5000)])
    row = stats.compare_percentile("latency_p50", "p50", 0.5, fast, slow)
    assert row.verdict == stats.WORSE
    assert row.relative_lo > 0.5


def _excludes_no_change(lo: float, hi: float) -> bool:
    return lo > 0 or hi < 0


def test_compare_rates__small_samples__ratio_and_difference_intervals_agree_on_no_change():
    """Katz's ratio interval (0.5 added to a zero cell) and Newcombe's difference can disagree
    near the edge: 1 of 3 against 5 of 5 gave a ratio interval through 0 (-32.6%..+786%) beside
    a difference excluding it (+3.5..+93.9 pp). The row says one thing about significance."""
    row = stats.compare_rates("m", "M", stats.HIGHER, (1, 3), (5, 5))
    assert row.relative_lo <= 0 <= row.relative_hi and row.difference_lo <= 0
    assert row.verdict == stats.UNKNOWN
    for nc in range(2, 25):
        for kc in range(nc + 1):
            for nt in range(2, 13):
                for kt in range(nt + 1):
                    c = stats.compare_rates("m", "M", stats.HIGHER, (kc, nc), (kt, nt))
                    if c.relative_lo is None or c.difference_lo is None:
                        continue
                    assert _excludes_no_change(c.relative_lo, c.relative_hi) == (
                        _excludes_no_change(c.difference_lo, c.difference_hi)
                    ), (kc, nc, kt, nt)


def test_display_row__change_rounding_to_zero__shown_as_0_0_not_minus_0_0():
    from metrics.dashboard.views import display_row

    row = stats.compare_rates("timeout_rate", "Timeout rate", stats.LOWER, (40, 5000), (8, 1001))
    shown = display_row(row)
    assert row.difference < 0 and round(row.difference * 100, 1) == 0
    assert shown["difference"].startswith("0.0 pp [") and "−0.0" not in shown["difference"]
    assert shown["relative"] == "−0.1%"
