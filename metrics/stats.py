"""Statistics for the comparison dashboard: pure functions, stdlib only, no database.

Every comparison is *treatment versus control* and gives a relative change (treatment / control
- 1) with a 95% confidence interval; the verdict reads that interval. Methods:

* **Rates** (error, timeout, positive share, corrections, cache hits, review grades): each
  variant's rate with the Wilson score interval; the difference in percentage points with
  Newcombe's hybrid score interval (Newcombe 1998, method 10); the relative change is the plain
  ratio of the two rates, its interval the Katz log interval with 0.5 added to every cell when
  a count is zero (the correction is in the interval only, never in the point).
* **Means per reply** (tokens, cost, follow-ups): the rollups keep sums, not sums of squares, so
  a reply-level variance is not available. Each hour is treated as a cluster and the mean is a
  ratio estimator sum(y)/sum(n) with its linearised (cluster-robust) variance (Cochran,
  *Sampling Techniques*, 6.9). That variance also absorbs hour-to-hour swings, so it is on the
  cautious side. The relative change uses the delta method on the log of the ratio of means.
* **Latency percentiles** come from the mergeable log-bucket histograms. Each variant's
  percentile gets a distribution-free interval from binomial order statistics, widened to the
  edges of the histogram buckets it falls in (the buckets are 5% wide), at 97.5% each; the
  ratio interval [lo_t/hi_c, hi_t/lo_c] then covers with at least 95% (Bonferroni). A
  Mann-Whitney U test on the binned values, with the tie correction, is also given: the
  probability that a treatment reply is faster than a control reply.

Channels as the unit: prompt versions are assigned by whole channel, so replies of one channel
are not independent and the two variants hold different channels. When a comparison of rates
is given the per-channel totals of both variants (``clusters``), each variant's design effect
(its cluster-robust, delta-method variance of the ratio estimator over channels, divided by the
binomial variance; never below 1; ``metrics.guardrails.rules.Clusters``) divides its counts before
the Wilson, Newcombe and Katz intervals are computed (Kish's effective sample size; Donner and
Klar's adjustment for cluster-randomised trials), and "more would settle it" counts channels.

Verdict: "better" or "worse" when the interval excludes no change, by which direction is good
for the metric; otherwise "not yet known", with "about N more replies would settle it": the
replies (at the current split between the variants) after which an effect of the size now
observed would be detected with 80% power at the 5% level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import histogram

Z95 = 1.959963984540054  # two-sided 95%
Z975 = 2.241402727604947  # two-sided 97.5% (each of two intervals in a Bonferroni pair)
Z_POWER80 = 0.8416212335729143  # one-sided 80% power

BETTER = "better"
WORSE = "worse"
UNKNOWN = "not yet known"
CHANGED = "changed"  # for figures where neither direction is better (e.g. reply volume)
SAME = "no clear change"

LOWER, HIGHER, NEUTRAL = "lower", "higher", "neutral"


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --- proportions ---------------------------------------------------------------------------


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (Wilson 1927; Newcombe 1998 method 3).
    Effective counts may be fractional (counts divided by a design effect)."""
    if n <= 0:
        return 0.0, 1.0
    if k < 0 or k > n:
        raise ValueError(f"k must be between 0 and n; got k={k}, n={n}.")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo, hi = centre - half, centre + half
    # exact at the edges (the formula gives these up to rounding)
    return (0.0 if k == 0 else max(0.0, lo)), (1.0 if k == n else min(1.0, hi))


def newcombe_difference(
    k1: int, n1: int, k2: int, n2: int, z: float = Z95
) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (Newcombe 1998, method 10)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one observation.")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, lo, hi


def risk_ratio(
    k1: int, n1: int, k2: int, n2: int, z: float = Z95
) -> tuple[float, float, float, float]:
    """(p1/p2, lo, hi, se of the log ratio) by the Katz log method; with a zero count, 0.5 is
    added to every cell (Haldane) so the interval stays finite."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one observation.")
    a, b, c, d = float(k1), float(n1 - k1), float(k2), float(n2 - k2)
    if 0 in (a, b, c, d):
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    m1, m2 = a + b, c + d
    ratio = (a / m1) / (c / m2)
    se = math.sqrt(1 / a - 1 / m1 + 1 / c - 1 / m2)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se), se


# --- means per reply from hourly sums ------------------------------------------------------


def ratio_mean(clusters: Iterable[tuple[float, float]]) -> tuple[float | None, float | None, int]:
    """Mean per reply from (replies, total) per hour: (mean, standard error, replies).

    The ratio estimator R = sum(y) / sum(n) with the linearised variance
    H/(H-1) * sum((y_h - R n_h)^2) / (sum n)^2 over the H hours that had replies."""
    rows = [(float(n), float(y)) for n, y in clusters if n > 0]
    total_n = sum(n for n, _ in rows)
    if total_n <= 0:
        return None, None, 0
    r = sum(y for _, y in rows) / total_n
    h = len(rows)
    if h < 2:
        return r, None, int(total_n)
    ss = sum((y - r * n) ** 2 for n, y in rows)
    return r, math.sqrt(h / (h - 1) * ss) / total_n, int(total_n)


# --- latency from histograms ---------------------------------------------------------------


def _sorted_hist(hist: Mapping) -> list[tuple[int, int]]:
    return sorted((int(k), int(v)) for k, v in hist.items() if int(v) > 0)


def _bucket_at_rank(items: list[tuple[int, int]], rank: int) -> int:
    seen = 0
    for index, count in items:
        seen += count
        if seen >= rank:
            return index
    return items[-1][0]


def quantile_interval(hist: Mapping, q: float, z: float = Z95) -> tuple[float, float, float] | None:
    """(estimate, lo, hi) of the q-quantile from a histogram: the nearest-rank estimate, and the
    distribution-free interval between the order statistics at ranks n q -/+ z sqrt(n q (1-q)),
    widened to the edges of the buckets holding them. None for an empty histogram."""
    items = _sorted_hist(hist)
    n = sum(v for _, v in items)
    if n == 0:
        return None
    spread = z * math.sqrt(n * q * (1 - q))
    lo_rank = max(1, math.floor(n * q - spread))
    hi_rank = min(n, math.ceil(n * q + spread) + 1)
    estimate = histogram.representative(_bucket_at_rank(items, max(1, math.ceil(q * n))))
    lo = histogram.bounds(_bucket_at_rank(items, lo_rank))[0]
    hi = histogram.bounds(_bucket_at_rank(items, hi_rank))[1]
    return estimate, lo, hi


def mann_whitney_binned(control: Mapping, treatment: Mapping) -> dict[str, float] | None:
    """Mann-Whitney U of treatment against control on binned values (ties within a bucket get
    mid-ranks; the variance has the tie correction). ``prob_faster`` is P(T < C) + P(T = C)/2,
    the probability that a treatment reply is faster; ``p_value`` is two-sided (normal
    approximation)."""
    hc, ht = (
        {int(k): int(v) for k, v in control.items()},
        {int(k): int(v) for k, v in treatment.items()},
    )
    n1, n2 = sum(hc.values()), sum(ht.values())
    if n1 == 0 or n2 == 0:
        return None
    below_c = 0  # control observations in lower buckets
    u_t = 0.0  # pairs where treatment is larger, ties count half
    ties = 0.0
    for index in sorted(set(hc) | set(ht)):
        c, t = hc.get(index, 0), ht.get(index, 0)
        u_t += t * below_c + 0.5 * t * c
        below_c += c
        tied = c + t
        ties += tied**3 - tied
    n = n1 + n2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    z = (u_t - mean) / math.sqrt(var) if var > 0 else 0.0
    return {
        "u": u_t,
        "z": z,
        "p_value": 2 * (1 - normal_cdf(abs(z))),
        "prob_faster": 1 - u_t / (n1 * n2),
    }


# --- verdicts and sample sizes -------------------------------------------------------------


def verdict(lo: float, hi: float, direction: str) -> str:
    """From a relative-change interval [lo, hi] (0 = no change)."""
    if direction == NEUTRAL:
        return CHANGED if lo > 0 or hi < 0 else SAME
    if lo > 0:
        return BETTER if direction == HIGHER else WORSE
    if hi < 0:
        return WORSE if direction == HIGHER else BETTER
    return UNKNOWN


def more_needed(
    effect: float, se: float | None, n_now: int, z: float = Z95, power_z: float = Z_POWER80
) -> int | None:
    """How many more observations (split as now) until an effect of this size on the scale of
    ``se`` would be detected with 80% power at the 5% level; None when there is no effect to
    detect (or no variance estimate yet). The standard error shrinks as 1/sqrt(n)."""
    if se is None or se <= 0 or effect == 0 or not math.isfinite(effect) or n_now <= 0:
        return None
    factor = (se * (z + power_z) / abs(effect)) ** 2
    return max(0, math.ceil((factor - 1) * n_now))


# --- one row of the comparison table ---------------------------------------------------------


@dataclass
class Comparison:
    metric: str
    label: str
    unit: str  # "%", "ms", "tokens", "$", "per reply"
    direction: str
    control: float | None
    treatment: float | None
    n_control: int
    n_treatment: int
    relative: float | None = None
    relative_lo: float | None = None
    relative_hi: float | None = None
    difference: float | None = None
    difference_lo: float | None = None
    difference_hi: float | None = None
    verdict: str = UNKNOWN
    more_needed: int | None = None
    sample: str = "replies"  # what more of would settle it: replies or reviews
    method: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _missing(c: Comparison, sample_word: str) -> Comparison:
    c.verdict = UNKNOWN
    where = "one variant" if (c.n_control or c.n_treatment) else "either variant"
    c.note = f"no {sample_word} on {where} yet"
    return c


def design_effect(k: float, n: float, clusters) -> float:
    """Var(rate) with channels as the unit over the binomial variance (at least 1); 1 without
    per-channel totals, with fewer than two channels, or at a rate of 0 or 1."""
    if clusters is None or n <= 0 or k <= 0 or k >= n:
        return 1.0
    robust = clusters.ratio_variance()
    if robust is None:
        return 1.0
    p = k / n
    return max(1.0, robust / (p * (1 - p) / n) * small_sample_factor(clusters))


def t_quantile(z: float, df: float) -> float:
    """The Student t quantile matching the normal quantile z at df degrees of freedom
    (Cornish-Fisher expansion, Abramowitz and Stegun 26.7.5; within 1% from df = 3)."""
    if df <= 0:
        return math.inf
    z3, z5, z7 = z**3, z**5, z**7
    return (
        z
        + (z3 + z) / (4 * df)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3)
    )


def small_sample_factor(clusters, z: float = Z95) -> float:
    """(t / z)^2 with df = the effective number of channels - 1, where the effective number is
    (sum n)^2 / sum n^2 (Kish): a few busy channels carry the variance with few degrees of
    freedom, so the normal quantile would give too narrow an interval."""
    if not clusters.nn:
        return 1.0
    effective = clusters.n * clusters.n / clusters.nn
    df = max(effective - 1, 2.0)
    return (t_quantile(z, df) / z) ** 2


def _agree_on_no_change(c: Comparison) -> None:
    """Make the relative interval (Katz log, with Haldane's 0.5 on a zero cell) and the
    difference in points (Newcombe, no correction) say the same about "no change": they are
    different methods and can disagree near the edge (e.g. 100% of v2's reviews against 68% of
    v1's: the 0.5 widens the ratio's interval past 0 while Newcombe's excludes it). Whichever
    excludes no change alone is widened to reach it, so a change counts as shown only when both
    methods show it (cautious: a wider interval keeps at least its coverage)."""
    rlo, rhi, dlo, dhi = c.relative_lo, c.relative_hi, c.difference_lo, c.difference_hi
    if rlo is None or rhi is None or dlo is None or dhi is None:
        return
    rel = rlo > 0 or rhi < 0
    diff = dlo > 0 or dhi < 0
    if rel == diff:
        return
    if rel:
        c.relative_lo, c.relative_hi = min(rlo, 0.0), max(rhi, 0.0)
    else:
        c.difference_lo, c.difference_hi = min(dlo, 0.0), max(dhi, 0.0)
    c.note = c.note or (
        "the ratio's and the difference's intervals disagreed at this sample size: both "
        "include no change"
    )


def compare_rates(
    metric: str,
    label: str,
    direction: str,
    control: tuple[int, int],
    treatment: tuple[int, int],
    *,
    sample: str = "replies",
    clusters: tuple | None = None,
) -> Comparison:
    """control/treatment are (events, trials); values in the row are proportions (0-1).
    ``clusters``: (control, treatment) per-channel totals (``metrics.guardrails.rules.Clusters``) to
    take channels as the unit of variance (see the module); then "more needed" counts
    channels."""
    if clusters is not None and control[1] and treatment[1]:
        return _compare_clustered(metric, label, direction, control, treatment, clusters)
    (kc, nc), (kt, nt) = control, treatment
    c = Comparison(
        metric,
        label,
        "%",
        direction,
        kc / nc if nc else None,
        kt / nt if nt else None,
        nc,
        nt,
        sample=sample,
        method="Wilson per variant; Newcombe hybrid score (difference); Katz log (ratio)",
    )
    if not nc or not nt:
        return _missing(c, sample)
    c.extra = {"control_ci": wilson(kc, nc), "treatment_ci": wilson(kt, nt)}
    c.difference, c.difference_lo, c.difference_hi = newcombe_difference(kt, nt, kc, nc)
    if kc == 0 and kt == 0:
        c.relative = 0.0
        c.relative_lo, c.relative_hi = -1.0, math.inf
        c.note = "none on either variant yet"
        c.verdict = SAME if direction == NEUTRAL else UNKNOWN
        return c
    ratio, lo, hi, se = risk_ratio(kt, nt, kc, nc)
    # The point is the plain relative difference of the two rates; the 0.5 that risk_ratio adds
    # to zero cells belongs to the interval only, which is widened to hold the point (0 events
    # on v2: down to -100%; none on v1: up to +infinity).
    c.relative = (kt / nt) / (kc / nc) - 1 if kc else math.inf
    c.relative_lo = -1.0 if kt == 0 else min(lo - 1, c.relative)
    c.relative_hi = math.inf if kc == 0 else max(hi - 1, c.relative)
    _agree_on_no_change(c)
    c.verdict = verdict(c.relative_lo, c.relative_hi, direction)
    if c.verdict == UNKNOWN:
        c.more_needed = more_needed(math.log(ratio), se, nc + nt)
    return c


def _compare_clustered(metric, label, direction, control, treatment, clusters) -> Comparison:
    """compare_rates with each variant's counts divided by its design effect."""
    (kc, nc), (kt, nt) = control, treatment
    cc, ct = clusters
    dc, dt = design_effect(kc, nc, cc), design_effect(kt, nt, ct)
    ec, et = (kc / dc, nc / dc), (kt / dt, nt / dt)  # effective (events, trials)
    c = Comparison(
        metric,
        label,
        "%",
        direction,
        kc / nc,
        kt / nt,
        nc,
        nt,
        sample="channels",
        method="channels as the unit: Wilson, Newcombe and Katz on counts divided by each "
        "variant's design effect (cluster-robust delta-method variance over channels)",
    )
    channels = (getattr(cc, "channels", 0), getattr(ct, "channels", 0))
    c.extra = {
        "control_ci": wilson(*ec),
        "treatment_ci": wilson(*et),
        "design_effect": (round(dc, 3), round(dt, 3)),
        "channels": channels,
    }
    c.difference, c.difference_lo, c.difference_hi = newcombe_difference(*et, *ec)
    c.difference = kt / nt - kc / nc
    if kc == 0 and kt == 0:
        c.relative = 0.0
        c.relative_lo, c.relative_hi = -1.0, math.inf
        c.note = "none on either variant yet"
        c.verdict = SAME if direction == NEUTRAL else UNKNOWN
        return c
    ratio, lo, hi, se = risk_ratio(*et, *ec)
    # As in compare_rates: the point is the plain relative difference of the two rates; the
    # zero-cell 0.5 belongs to the interval only, which is widened to hold the point.
    c.relative = (kt / nt) / (kc / nc) - 1 if kc else math.inf
    c.relative_lo = -1.0 if kt == 0 else min(lo - 1, c.relative)
    c.relative_hi = math.inf if kc == 0 else max(hi - 1, c.relative)
    _agree_on_no_change(c)
    c.verdict = verdict(c.relative_lo, c.relative_hi, direction)
    if min(channels) < 2:
        c.note = "fewer than two channels on a variant: the interval cannot see channel spread"
    if c.verdict == UNKNOWN:
        # the variance shrinks with more channels (at today's replies per channel), not with
        # more replies from the same channels
        c.more_needed = more_needed(math.log(ratio), se, sum(channels))
    return c


def compare_means(
    metric: str,
    label: str,
    unit: str,
    direction: str,
    control: Iterable[tuple[float, float]],
    treatment: Iterable[tuple[float, float]],
) -> Comparison:
    """control/treatment are (replies, total) per hour."""
    mc, sc, nc = ratio_mean(control)
    mt, st, nt = ratio_mean(treatment)
    c = Comparison(
        metric,
        label,
        unit,
        direction,
        mc,
        mt,
        nc,
        nt,
        method="ratio of hourly sums; hours as clusters; delta method on the log ratio",
    )
    if mc is None or mt is None:
        return _missing(c, "replies")
    c.difference = mt - mc
    if mc <= 0 or mt <= 0:
        c.note = "a mean of zero: no ratio"
        return c
    c.relative = mt / mc - 1
    if sc is None or st is None:
        c.note = "fewer than two hours of data: no interval yet"
        return c
    se = math.sqrt((sc / mc) ** 2 + (st / mt) ** 2)
    log_ratio = math.log(mt / mc)
    c.relative_lo, c.relative_hi = (
        math.exp(log_ratio - Z95 * se) - 1,
        math.exp(log_ratio + Z95 * se) - 1,
    )
    c.difference_lo = c.difference - Z95 * math.sqrt(sc**2 + st**2)
    c.difference_hi = c.difference + Z95 * math.sqrt(sc**2 + st**2)
    c.verdict = verdict(c.relative_lo, c.relative_hi, direction)
    if c.verdict == UNKNOWN:
        c.more_needed = more_needed(log_ratio, se, nc + nt)
    return c


def compare_percentile(
    metric: str, label: str, q: float, control_hist: Mapping, treatment_hist: Mapping
) -> Comparison:
    """Latency percentile q of treatment against control (lower is better)."""
    ic = quantile_interval(control_hist, q, Z975)
    it = quantile_interval(treatment_hist, q, Z975)
    nc = sum(int(v) for v in control_hist.values())
    nt = sum(int(v) for v in treatment_hist.values())
    c = Comparison(
        metric,
        label,
        "ms",
        LOWER,
        ic[0] if ic else None,
        it[0] if it else None,
        nc,
        nt,
        method="order-statistic intervals at 97.5% widened to bucket edges; Bonferroni ratio",
    )
    if ic is None or it is None:
        return _missing(c, "replies")
    (ec, lc, hc), (et, lt, ht) = ic, it
    c.extra = {"control_ci": (lc, hc), "treatment_ci": (lt, ht)}
    c.relative = et / ec - 1
    c.relative_lo, c.relative_hi = lt / hc - 1, ht / lc - 1
    c.difference = et - ec
    c.difference_lo, c.difference_hi = lt - hc, ht - lc
    mw = mann_whitney_binned(control_hist, treatment_hist)
    if mw:
        c.extra["mann_whitney"] = mw
    c.verdict = verdict(c.relative_lo, c.relative_hi, LOWER)
    if c.verdict == UNKNOWN and c.relative != 0:
        # the interval's half-width on the log scale stands in for z * se
        se = (math.log(ht / lc) - math.log(lt / hc)) / 2 / Z95 if lc > 0 and hc > 0 else None
        effect = math.log(et / ec)
        # bucket width puts a floor under the interval: effects inside one bucket never settle
        if abs(effect) > 2 * math.log(histogram.GROWTH):
            c.more_needed = more_needed(effect, se, nc + nt)
    return c
