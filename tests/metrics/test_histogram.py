"""metrics.histogram: fixed log-spaced buckets whose sums give percentiles over merged hours."""

from __future__ import annotations

import random

from metrics import histogram


def test_bucket_of__value__lies_inside_its_bucket():
    for value in [0, 0.3, 1, 1.05, 2.5, 99.9, 100, 1234.5, 10_000, 59_999.9]:
        lo, hi = histogram.bounds(histogram.bucket_of(value))
        assert lo <= value < hi


def test_bucket_of__huge_value__lands_in_last_bucket():
    assert histogram.bucket_of(10**12) == histogram.MAX_BUCKET


def test_percentile__empty__is_none():
    assert histogram.percentile({}, 0.5) is None


def test_percentile__merged_hours__equals_percentile_of_all_values_within_growth():
    rng = random.Random(7)
    hours = [[rng.lognormvariate(7, 0.6) for _ in range(500)] for _ in range(24)]
    hists = [
        {
            b: sum(1 for v in values if histogram.bucket_of(v) == b)
            for b in {histogram.bucket_of(v) for v in values}
        }
        for values in hours
    ]
    merged = histogram.merge(hists)
    every = sorted(v for values in hours for v in values)
    for q in (0.5, 0.95, 0.99):
        exact = every[int(q * len(every)) - 1]
        assert abs(histogram.percentile(merged, q) - exact) / exact < histogram.GROWTH - 1


def test_merge__string_keys_from_json__are_summed_as_ints():
    assert histogram.merge([{"3": 2}, {3: 1, "4": 5}]) == {3: 3, 4: 5}


def test_ranks__random_histograms__name_the_buckets_percentile_reports():
    rng = random.Random(16)
    for _ in range(300):
        hist = {
            str(rng.randint(0, histogram.MAX_BUCKET)): rng.choice([1, 1, 2, 7, 40])
            for _ in range(rng.randint(1, 60))
        }
        p50, p95, p99 = (int(i) for i in histogram.ranks(hist).split(","))
        for index, q in ((p50, 0.50), (p95, 0.95), (p99, 0.99)):
            assert round(histogram.representative(index), 1) == histogram.percentile(hist, q)


def test_ranks__empty_histogram__is_an_empty_string():
    assert histogram.ranks({}) == ""
    assert histogram.ranks({"12": 0}) == ""


def test_stamped_ranks__carry_the_rows_computed_at():
    assert histogram.stamped_ranks({"3": 1, "9": 1}, 1_700_000_000_123_456) == (
        "3,9,9@1700000000123456"
    )
    assert histogram.stamped_ranks({}, 5) == "@5"
