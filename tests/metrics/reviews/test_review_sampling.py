"""The review sampling rule and the agreement statistic (pure functions, no database)."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from metrics.reviews.sampling import (
    Candidate,
    cohen_kappa,
    draw,
    kappa_label,
    water_fill,
    wilson_interval,
)

MONDAY = date(2026, 3, 2)


def week(
    variants: dict[str, int], channels: int = 4, days: int = 7, start: int = 0
) -> list[Candidate]:
    out = []
    n = start
    for variant, count in variants.items():
        for i in range(count):
            n += 1
            out.append(
                Candidate(
                    n, variant, MONDAY + timedelta(days=i % days), f"ch{(i // days) % channels}"
                )
            )
    return out


def test_draw__skewed_traffic__gives_each_variant_an_equal_share():
    candidates = week({"v1": 950, "v2_full": 50})
    result = draw(candidates, 50, seed=1)
    variants = Counter(c.variant for c in candidates if c.id in set(result.ids))
    assert variants == {"v1": 25, "v2_full": 25}


def test_draw__three_variants__splits_equally_with_odd_units_in_name_order():
    result = draw(week({"v1": 300, "v2_full": 30, "v2_simplified": 30}), 50, seed=2)
    assert {v: a["drawn"] for v, a in result.allocation.items()} == {
        "v1": 17,
        "v2_full": 17,
        "v2_simplified": 16,
    }


def test_draw__variant_with_too_few__gives_all_and_the_rest_goes_to_others():
    result = draw(week({"v1": 500, "v2_full": 7}), 50, seed=3)
    assert result.allocation["v2_full"]["drawn"] == 7
    assert result.allocation["v1"]["drawn"] == 43
    assert result.shortfall == 0


def test_draw__fewer_candidates_than_asked__takes_all_and_records_shortfall():
    candidates = week({"v1": 10, "v2_full": 5})
    result = draw(candidates, 50, seed=4)
    assert sorted(result.ids) == sorted(c.id for c in candidates)
    assert result.shortfall == 35


def test_draw__within_a_variant__spreads_over_days():
    result = draw(week({"v1": 700}), 21, seed=5)
    assert result.allocation["v1"]["days"] == {
        (MONDAY + timedelta(days=d)).isoformat(): 3 for d in range(7)
    }


def test_draw__one_busy_day__does_not_crowd_out_the_others():
    busy = [Candidate(i, "v1", MONDAY + timedelta(days=5), "ch0") for i in range(1, 500)]
    quiet = [Candidate(1000 + d, "v1", MONDAY + timedelta(days=d), "ch1") for d in range(5)]
    result = draw(busy + quiet, 10, seed=6)
    chosen = set(result.ids)
    assert all(c.id in chosen for c in quiet)


def test_draw__one_dominant_channel__round_robins_over_channels():
    loud = [Candidate(i, "v1", MONDAY, "loud") for i in range(1, 901)]
    others = [Candidate(1000 + i, "v1", MONDAY, f"quiet{i % 9}") for i in range(90)]
    result = draw(loud + others, 20, seed=7)
    by_channel = Counter(c.channel_id for c in loud + others if c.id in set(result.ids))
    assert by_channel["loud"] == 2
    assert len(by_channel) == 10


def test_draw__same_candidates_and_seed__gives_the_same_sample_in_the_same_order():
    candidates = week({"v1": 400, "v2_full": 40, "v2_simplified": 40})
    first = draw(candidates, 50, seed=123456, double_share=0.2)
    again = draw(list(reversed(candidates)), 50, seed=123456, double_share=0.2)
    assert first.ids == again.ids
    assert first.double == again.double


def test_draw__another_seed__gives_another_sample():
    candidates = week({"v1": 400, "v2_full": 40})
    assert set(draw(candidates, 50, seed=1).ids) != set(draw(candidates, 50, seed=2).ids)


def test_draw__never_repeats_a_reply():
    result = draw(week({"v1": 60, "v2_full": 60}), 100, seed=8)
    assert len(result.ids) == len(set(result.ids)) == 100


def test_draw__queue_order__is_not_grouped_by_variant():
    candidates = week({"v1": 400, "v2_full": 400})
    variant = {c.id: c.variant for c in candidates}
    order = [variant[i] for i in draw(candidates, 50, seed=9).ids]
    assert order[:25] != ["v1"] * 25 and order[:25] != ["v2_full"] * 25


def test_draw__double_share__picks_that_many_items():
    result = draw(week({"v1": 400, "v2_full": 400}), 50, seed=10, double_share=0.2)
    assert len(result.double) == 10
    assert result.double <= set(result.ids)


def test_water_fill__equal_split_capped_by_availability():
    assert water_fill(10, {"a": 2, "b": 100, "c": 100}, ["a", "b", "c"]) == {"a": 2, "b": 4, "c": 4}


def test_cohen_kappa__textbook_example__is_0_4():
    # Wikipedia's "Cohen's kappa" worked example: 50 items, yes/yes 20, yes/no 5, no/yes 10,
    # no/no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa__three_categories__matches_hand_computation():
    # Fleiss, Levin & Paik (2003), Table 18.1 style 3x3: diagonal 88, 40, 3 of 200... smaller:
    pairs = (
        [("a", "a")] * 4 + [("a", "b")] * 1 + [("b", "b")] * 3 + [("c", "c")] * 1 + [("b", "a")] * 1
    )
    # p_o = 8/10; rater1 a5 b4 c1, rater2 a5 b4 c1 -> p_e = (25+16+1)/100 = .42
    assert cohen_kappa(pairs) == pytest.approx((0.8 - 0.42) / (1 - 0.42))


def test_cohen_kappa__no_pairs__is_none():
    assert cohen_kappa([]) is None


def test_cohen_kappa__one_category_only__is_undefined():
    assert cohen_kappa([("none", "none")] * 5) is None


def test_kappa_label__landis_koch_bands():
    assert [kappa_label(k) for k in (-0.1, 0.1, 0.3, 0.5, 0.7, 0.9)] == [
        "poor (worse than chance)",
        "slight",
        "fair",
        "moderate",
        "substantial",
        "almost perfect",
    ]


def test_wilson_interval__zero_of_25__has_a_positive_upper_bound():
    low, high = wilson_interval(0, 25)
    assert low == 0.0 and high == pytest.approx(0.1332, abs=1e-3)
