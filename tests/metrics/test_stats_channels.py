"""The dashboard's intervals of rates with channels as the unit (metrics.stats; docs/dashboard.md).

Coverage is measured by simulation: a fixed population of 300 channels with Zipf-concentrated
traffic and heterogeneous rates, whole channels assigned at random to control or treatment in
each run, the treatment multiplying every channel's rate by a known factor. A 95% interval must
cover the true relative change in about 95% of the runs; the intervals that treat replies as
independent cover far less. Deterministic with a seed.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from metrics import rollups, stats
from metrics.dashboard import series
from metrics.guardrails.rules import Clusters
from metrics.models import ResponseEvent
from tests.metrics.guardrails.test_guardrail_rollback import T0, V1, V2, Traffic, run, start_phase

RUNS = 400
# 95% of 400 runs is 380 covered; three binomial standard deviations (4.36) either side
COVERED = range(380 - 13, 380 + 14)


def _coverage(seed: int, *, share: float, replies: int, factor: float = 1.3):
    """(runs whose corrected interval covers, runs whose uncorrected one covers, runs whose
    corrected difference interval covers the true difference)."""
    rng = np.random.default_rng(seed)
    weights = 1 / (np.arange(300) + 1) ** 0.9
    weights /= weights.sum()
    rates = np.minimum(0.05 * np.exp(rng.normal(-0.18, 0.6, 300)), 1.0)
    true_difference = (factor - 1) * float((weights * rates).sum())
    covered = covered_plain = covered_difference = 0
    for _ in range(RUNS):
        treated = rng.random(300) < share
        n = rng.poisson(replies * weights)
        y = rng.binomial(n, np.minimum(rates * np.where(treated, factor, 1.0), 1.0))
        arms = [
            [(int(a), int(b)) for a, b, t in zip(y, n, treated, strict=True) if t == side]
            for side in (False, True)
        ]
        (kc, nc), (kt, nt) = [(sum(a for a, _ in arm), sum(b for _, b in arm)) for arm in arms]
        clusters = (Clusters.of(arms[0]), Clusters.of(arms[1]))
        row = stats.compare_rates("e", "E", stats.LOWER, (kc, nc), (kt, nt), clusters=clusters)
        plain = stats.compare_rates("e", "E", stats.LOWER, (kc, nc), (kt, nt))
        covered += row.relative_lo <= factor - 1 <= row.relative_hi
        covered_plain += plain.relative_lo <= factor - 1 <= plain.relative_hi
        covered_difference += row.difference_lo <= true_difference <= row.difference_hi
    return covered, covered_plain, covered_difference


@pytest.mark.parametrize(
    ("share", "replies"),
    [(0.5, 6_000), (0.5, 60_000), (0.2, 6_000), (0.2, 60_000)],
    ids=["canary-day", "canary-busy", "beta-day", "beta-busy"],
)
def test_rate_intervals__channels_assigned_whole__cover_the_true_change_95_percent(share, replies):
    covered, covered_plain, covered_difference = _coverage(2026, share=share, replies=replies)
    assert covered in COVERED, covered / RUNS
    assert covered_difference in COVERED, covered_difference / RUNS
    # treating replies as independent: too narrow, more so the more replies each channel has
    assert covered_plain < 350


def test_t_quantile__matches_the_table():
    for df, expected in ((3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (1000, 1.962)):
        assert stats.t_quantile(stats.Z95, df) == pytest.approx(expected, rel=0.01)


def test_design_effect__even_channels_at_one_rate__about_one():
    clusters = Clusters.of([(5, 100)] * 50)
    assert stats.design_effect(250, 5000, clusters) == pytest.approx(1.0, abs=0.1)
    assert stats.design_effect(250, 5000, None) == 1.0


def test_compare_rates__clustered_undecided__more_channels_not_more_replies_would_settle_it():
    control = [(5, 100), (15, 100)] * 10
    treatment = [(7, 100), (17, 100)] * 10
    row = stats.compare_rates(
        "error_rate",
        "Error rate",
        stats.LOWER,
        (200, 2000),
        (240, 2000),
        clusters=(Clusters.of(control), Clusters.of(treatment)),
    )
    plain = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (200, 2000), (240, 2000))
    assert row.verdict == stats.UNKNOWN and row.sample == "channels"
    assert row.more_needed is not None and row.more_needed > 0
    assert row.relative_hi - row.relative_lo > plain.relative_hi - plain.relative_lo
    assert row.relative == pytest.approx(plain.relative)
    assert row.extra["channels"] == (20, 20)


def _clustered_row(control, treatment):
    kc, nc = sum(k for k, _ in control), sum(n for _, n in control)
    kt, nt = sum(k for k, _ in treatment), sum(n for _, n in treatment)
    return stats.compare_rates(
        "error_rate",
        "Error rate",
        stats.LOWER,
        (kc, nc),
        (kt, nt),
        clusters=(Clusters.of(control), Clusters.of(treatment)),
    )


def test_dashboard_settle_sentence__channels_as_the_unit__says_how_many_times_todays_channels():
    """With channels as the unit the page must not ask for "N more channels" (a rollout has the
    channels it has): it says how many times today's channels would settle the question."""
    from metrics.dashboard.views import display_row

    small = _clustered_row([(5, 100), (15, 100)] * 10, [(5, 100), (16, 100)] * 10)
    near = _clustered_row([(5, 100), (15, 100)] * 10, [(7, 100), (19, 100)] * 10)
    times = {}
    for name, row in (("small", small), ("near", near)):
        now = sum(row.extra["channels"])
        assert row.verdict == stats.UNKNOWN and row.more_needed > 0 and now == 40
        times[name] = math.ceil((now + row.more_needed) / now)
        assert display_row(row)["settle"] == (
            f"not settled at 40 channels: about {times[name]:,}x as many would settle it"
        )
    assert times["small"] > times["near"] >= 2


def test_dashboard_settle_sentence__replies_as_the_unit__counts_the_replies():
    from metrics.dashboard.views import display_row

    row = stats.compare_rates("error_rate", "Error rate", stats.LOWER, (20, 1000), (26, 1000))
    assert row.verdict == stats.UNKNOWN and row.sample == "replies"
    assert display_row(row)["settle"] == f"about {row.more_needed:,} more replies would settle it"


def test_dashboard_comparison__error_rate_interval__from_the_raw_events_per_channel(rollout):
    """The comparison table's error-rate row against the same interval computed from the raw
    replies grouped by channel in this test."""
    canary = start_phase(rollout, 3)
    traffic = Traffic(canary, {"v1": V1, "v2_full": V2}, per_minute=40, channels=120)
    run(traffic, canary, minutes=30, stop_on_breach=False)
    rollups.catch_up(time_budget=30)
    since, until = T0, T0 + timedelta(hours=1)
    window = series.load_window(canary, since, until, "hour")
    row = next(r for r in series.comparison(window, "v1", "v2_full") if r.metric == "error_rate")
    per_channel: dict[str, dict[str, list[int]]] = {}
    for variant, channel, error in ResponseEvent.objects.filter(
        rollout_key=canary.key, ts__gte=since, ts__lt=until
    ).values_list("variant", "channel_id", "error"):
        cell = per_channel.setdefault(variant, {}).setdefault(channel, [0, 0])
        cell[0] += error is not None
        cell[1] += 1
    counts = {v: [sum(c[i] for c in ch.values()) for i in (0, 1)] for v, ch in per_channel.items()}
    want = stats.compare_rates(
        "error_rate",
        "Error rate",
        stats.LOWER,
        tuple(counts["v1"]),
        tuple(counts["v2_full"]),
        clusters=(
            Clusters.of(per_channel["v1"].values()),
            Clusters.of(per_channel["v2_full"].values()),
        ),
    )
    assert row.sample == "channels"
    assert (row.relative_lo, row.relative_hi) == pytest.approx((want.relative_lo, want.relative_hi))
    assert (row.difference_lo, row.difference_hi) == pytest.approx(
        (want.difference_lo, want.difference_hi)
    )
    assert not math.isnan(row.relative_lo)
