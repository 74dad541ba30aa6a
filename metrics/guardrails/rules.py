"""Guardrail rules: pure evaluation and the sequential test (no database; see docs/guardrails.md).

A rule compares the treatment variants (v2) with the control (v1) over the rule's *evidence
window* (from the start of the current exposure, see ``metrics.guardrails.services``) and says one
of ``ok``, ``insufficient`` (below the data floor), ``warning`` (the point estimate is past the
threshold, the test has not rejected) or ``breached`` (the test rejected).

The test: a mixture sequential probability ratio test (mSPRT) with a normal mixture on the
difference of two proportions, as in Johari, Pekelis and Walsh, "Always Valid Inference:
Bringing Sequential Analysis to A/B Testing" (2015/2022). For the one-sided question "is v2's
rate above (1 + margin) x v1's rate" with theta = p2 - (1 + margin) p1 and its estimate
theta_hat with variance V (plug-in, each rate smoothed by half a count):

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * theta_hat^2 / (2 V (V + tau^2)))

and the rule rejects (breached) when theta_hat > 0 and Lambda >= 1/alpha. By Ville's inequality
the chance that Lambda *ever* reaches 1/alpha under the null is at most alpha, however often it
is looked at, so evaluating every minute for the whole phase keeps the false-alarm rate per rule
under alpha (0.05 by default); only using one side of the two-sided mixture makes it
conservative. The always-valid p-value is the running minimum of 1/Lambda (1 at looks where
v2 looks better). When a rollout has
two treatment variants (v2_full, v2_simplified) each is tested at alpha/2 (Bonferroni), so a rule
stays under alpha per phase. ``tau`` (the mixture's spread) is fixed per metric: it is the size
of effect the test is tuned to find fastest; any fixed tau keeps the guarantee.

Latency: "p95 of v2 above factor x p95 of v1" is a test of proportions too: with t = factor x
the p95 of v1, the share of v2 replies slower than t is compared with the share of v1 replies
slower than v1's p95 (at most 5%); v2's p95 exceeds t exactly when more than 5% of v2 is slower.

Channels, not replies, are the unit of variance. selcontrol assigns whole channels to a variant
for a whole phase, so the two arms hold fixed sets of channels that differ by an amount more
replies never average away. When the arms carry per-channel totals (``Arm.clusters``, kept by
``metrics.rollups`` per channel and hour), each arm's rate is a ratio estimator
R = sum(y_c) / sum(n_c) over its channels c with the cluster-robust (linearised, delta-method)
variance C / (C - 1) * sum((y_c - R n_c)^2) / (sum n_c)^2 (Cochran 6.9; never below the binomial
variance of the same counts), and V above is the sum of the two arms' variances. A rule needs
``min_channels`` channels per arm (10 by default) besides its data floor: with fewer, it says so
and does not judge. Arms without per-channel totals (built by hand) get the binomial variance.

The crash guard (``CRASH``) is not a comparison over the window but two tests of v2's errors
against p0 = the rule's absolute error rate, or v1's error rate over the last hour when that is
higher (v1 with at least ``CRASH_CONTROL_FLOOR`` replies there). The onset test reads v2's first
``CRASH_ONSET_REPLIES`` replies of the window: a sequential probability ratio test (a mixture
over crash rates, ``crash_onset``) that may act from two errors and, by Ville's inequality,
falsely fires at most alpha of the time over the whole phase. The scan reads v2's replies of the
last ``CRASH_LOOKBACK_MINUTES``: for each run of the most recent replies that starts at an error,
the binomial tail P(Bin(j, p0) >= e) of its e errors in j replies; the smallest tail x the
replies in the lookback (Bonferroni over the runs) at most alpha breaches, with at least
``CRASH_SCAN_MIN_ERRORS`` errors. Both need errors from at least two channels (when v2 had
replied in more than one). See ``evaluate_crash``.

Cost is measured, not estimated: the daily cost if every channel got v2 (v2's cost per reply x
all replies per day, over the trailing 24 hours or the window if shorter, scaled to a day) is
compared with the budget: warning at 80% of it, breached above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import histogram

OK = "ok"
INSUFFICIENT = "insufficient"
WARNING = "warning"
BREACHED = "breached"
OFF = "off"
STATUS_LABELS = {
    OK: "ok",
    INSUFFICIENT: "not enough data",
    WARNING: "warning",
    BREACHED: "breached",
    OFF: "not active",
}

ERROR_RATE = "error_rate"
NEGATIVE_REACTIONS = "negative_reaction_rate"
CORRECTIONS = "correction_rate"
HALLUCINATIONS = "hallucination_rate"
LATENCY_P95 = "latency_p95"
DAILY_COST = "daily_cost"
CRASH = "crash"
METRICS = (
    ERROR_RATE,
    NEGATIVE_REACTIONS,
    CORRECTIONS,
    HALLUCINATIONS,
    LATENCY_P95,
    DAILY_COST,
    CRASH,
)

METRIC_LABELS = {
    ERROR_RATE: "error rate",
    NEGATIVE_REACTIONS: "negative-reaction rate",
    CORRECTIONS: "correction rate",
    HALLUCINATIONS: "hallucination rate",
    LATENCY_P95: "p95 latency",
    DAILY_COST: "daily cost at 100% v2",
    CRASH: "error rate of v2's most recent replies (crash guard)",
}

# The mixture's spread per metric: the effect (in absolute proportion) found fastest.
TAU = {
    ERROR_RATE: 0.02,
    NEGATIVE_REACTIONS: 0.02,
    CORRECTIONS: 0.02,
    HALLUCINATIONS: 0.05,
    LATENCY_P95: 0.03,
}
COST_WARNING_SHARE = 0.8
DEFAULT_ALPHA = 0.05
MIN_CHANNELS = 10  # per arm, before a rate rule may judge (channels are the unit of variance)
CRASH_LOOKBACK_MINUTES = 60
CRASH_CONTROL_FLOOR = 100  # v1 replies in the lookback before its error rate raises p0
# The crash guard's onset test: v2's first replies of the evidence window, against p0, by a
# likelihood ratio averaged over these error rates of a crash (equal weights), stopped after
# CRASH_ONSET_REPLIES replies (the scan of the last hour watches from then on).
CRASH_ONSET_RATES = (0.3, 0.5, 0.7, 0.9)
CRASH_ONSET_REPLIES = 200
# The scan restarts at every reply (thousands of looks per phase, each at alpha), so it needs
# more errors than the onset test, which is one test for the whole phase (docs/guardrails.md).
CRASH_SCAN_MIN_ERRORS = 3


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What a rule asks; built from a GuardrailRule row or by hand in tests and the benchmark.

    ``threshold`` means: the relative margin for rates (0.10 = "up more than 10%"; 0 = "above
    v1"), the factor for latency (1.5 = "p95 more than 1.5x v1's"), dollars per day for cost.
    ``min_samples``: replies per variant (reviews per variant for hallucinations) before the
    rule may judge; for the crash guard, the errors needed. ``min_channels``: channels per
    variant before a rate or latency rule may judge (when the arms carry per-channel totals).
    For the crash guard ``threshold`` is the absolute error rate it tests against (0.10).
    """

    metric: str
    threshold: float = 0.0
    min_samples: int = 200
    alpha: float = DEFAULT_ALPHA
    min_channels: int = MIN_CHANNELS


@dataclass(frozen=True, slots=True)
class Clusters:
    """Per-channel totals of one arm for one rate, reduced to what the variance needs: the
    number of channels and the sums of n, y, n^2, y^2 and n*y over them (y events out of n)."""

    channels: int = 0
    n: float = 0.0
    y: float = 0.0
    nn: float = 0.0
    yy: float = 0.0
    ny: float = 0.0

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> Clusters:
        """From (events, trials) per channel; channels without trials are left out."""
        c = n = y = nn = yy = ny = 0.0
        for yc, nc in pairs:
            if nc <= 0:
                continue
            c += 1
            n += nc
            y += yc
            nn += nc * nc
            yy += yc * yc
            ny += nc * yc
        return cls(int(c), n, y, nn, yy, ny)

    def ratio_variance(self) -> float | None:
        """The cluster-robust variance of R = y / n: C/(C-1) sum((y_c - R n_c)^2) / n^2
        (None with fewer than two channels)."""
        if self.channels < 2 or self.n <= 0:
            return None
        r = self.y / self.n
        ss = self.yy - 2 * r * self.ny + r * r * self.nn
        return max(0.0, ss) * self.channels / (self.channels - 1) / (self.n * self.n)


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's figures over the window; the fields a metric needs."""

    variant: str
    responses: int = 0
    errors: int = 0
    reactions_negative: int = 0
    corrections: int = 0
    graded: int = 0
    hallucinations: int = 0
    latency_hist: Mapping[int, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    # per-channel totals: {numerator field: Clusters} for the rates; one latency histogram per
    # channel for the latency rule. Empty: replies are treated as independent.
    clusters: Mapping[str, Clusters] = field(default_factory=dict)
    channel_latency: Sequence[Mapping[int, int]] = ()


@dataclass(frozen=True, slots=True)
class SequentialResult:
    estimate: float  # theta_hat = p2 - (1 + margin) p1
    likelihood_ratio: float
    p_value: float  # 1 / Lambda at this look when theta_hat > 0 (else 1), capped at 1
    rejected: bool


@dataclass(slots=True)
class Verdict:
    """A rule's state with the numbers behind it (``numbers`` is JSON-ready)."""

    status: str
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None  # the treatment variant that decided the status

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _smoothed(x: float, n: float) -> float:
    return (x + 0.5) / (n + 1.0)


def msprt(
    x1: float,
    n1: float,
    x2: float,
    n2: float,
    *,
    margin: float = 0.0,
    tau: float = 0.02,
    alpha: float = DEFAULT_ALPHA,
    variance: float | None = None,
) -> SequentialResult:
    """The one-sided mSPRT of p2 > (1 + margin) p1 (x successes out of n per arm; see module).
    ``variance``: the variance of theta_hat when known better than the binomial one (e.g. the
    cluster-robust one from ``difference_variance``)."""
    if n1 <= 0 or n2 <= 0:
        return SequentialResult(0.0, 1.0, 1.0, False)
    k = 1.0 + margin
    p1, p2 = x1 / n1, x2 / n2
    if variance is None:
        variance = binomial_variance(x1, n1, x2, n2, margin)
    theta = p2 - k * p1
    t2 = tau * tau
    log_lr = 0.5 * math.log(variance / (variance + t2)) + t2 * theta * theta / (
        2 * variance * (variance + t2)
    )
    log_lr = min(log_lr, 700.0)
    lr = math.exp(log_lr)
    rejected = theta > 0 and lr >= 1.0 / alpha
    # one-sided: evidence that v2 is *better* is no evidence that it is worse
    p_value = min(1.0, 1.0 / lr) if theta > 0 else 1.0
    return SequentialResult(theta, lr, p_value, rejected)


def binomial_variance(x1: float, n1: float, x2: float, n2: float, margin: float = 0.0) -> float:
    """Var(p2 - (1 + margin) p1) for independent replies, each rate smoothed by half a count."""
    k = 1.0 + margin
    s1, s2 = _smoothed(x1, n1), _smoothed(x2, n2)
    return s2 * (1 - s2) / n2 + k * k * s1 * (1 - s1) / n1


def arm_variance(x: float, n: float, clusters: Clusters | None) -> float:
    """Variance of one arm's rate x / n: cluster-robust from its per-channel totals, never below
    the binomial variance of the same counts (which also covers runs with no events at all)."""
    s = _smoothed(x, n)
    binomial = s * (1 - s) / n
    robust = clusters.ratio_variance() if clusters is not None else None
    return binomial if robust is None else max(binomial, robust)


def difference_variance(
    x1: float,
    n1: float,
    x2: float,
    n2: float,
    margin: float = 0.0,
    clusters1: Clusters | None = None,
    clusters2: Clusters | None = None,
) -> float:
    """Var(p2 - (1 + margin) p1) with channels as the unit when both arms have their totals
    (the arms hold different channels, so their estimates are independent)."""
    if clusters1 is None or clusters2 is None:
        return binomial_variance(x1, n1, x2, n2, margin)
    k = 1.0 + margin
    return arm_variance(x2, n2, clusters2) + k * k * arm_variance(x1, n1, clusters1)


def always_valid_halfwidth(variance: float, *, tau: float, alpha: float) -> float:
    """Half-width of the mSPRT's always-valid (1 - alpha) confidence interval for theta: the
    theta_0 whose Lambda(theta_0) stays below 1/alpha (Johari et al., section 4)."""
    t2 = tau * tau
    spread = math.log(1 / alpha) + 0.5 * math.log((variance + t2) / variance)
    return math.sqrt(2 * variance * (variance + t2) / t2 * spread)


@dataclass(frozen=True, slots=True)
class ConfidenceBound:
    """An always-valid confidence interval of theta = p2 - (1 + margin) p1 (see below)."""

    estimate: float
    lower: float
    upper: float


def always_valid_bound(
    x1: float,
    n1: float,
    x2: float,
    n2: float,
    *,
    margin: float = 0.0,
    tau: float = 0.02,
    alpha: float = DEFAULT_ALPHA,
    clusters1: Clusters | None = None,
    clusters2: Clusters | None = None,
) -> ConfidenceBound:
    """The confidence sequence that inverts the mSPRT: every theta0 the test would not reject.

    With the same normal mixture as ``msprt``, Lambda(theta0) < 1/alpha exactly when
    (theta_hat - theta0)^2 < 2 V (V + tau^2) / tau^2 * (log(1/alpha) + log((V + tau^2) / V) / 2),
    so [theta_hat - h, theta_hat + h] with that half-width h covers the true difference at every
    look at once with probability at least 1 - alpha (Howard et al. 2021; Johari et al. 2022).
    V is cluster-robust (channels as the unit) when both arms' per-channel totals are given.
    With no data in an arm the bound is the whole line.
    """
    if n1 <= 0 or n2 <= 0:
        return ConfidenceBound(0.0, -math.inf, math.inf)
    theta = x2 / n2 - (1.0 + margin) * x1 / n1
    variance = difference_variance(x1, n1, x2, n2, margin, clusters1, clusters2)
    half = always_valid_halfwidth(variance, tau=tau, alpha=alpha)
    return ConfidenceBound(theta, theta - half, theta + half)


def exceedances(hist: Mapping, threshold_ms: float) -> int:
    """Replies in buckets wholly at or above ``threshold_ms`` (a straddling one is not counted)."""
    total = 0
    for key, count in hist.items():
        lo, _hi = histogram.bounds(int(key))
        if lo >= threshold_ms:
            total += int(count)
    return total


def window_began(since: datetime | None) -> str:
    """'this window began Nov 29, 14:00 UTC' ('' when unknown): how a guardrail and a success
    criterion with no data yet say since when their evidence counts."""
    if since is None:
        return ""
    at = since.astimezone(UTC)
    return f"this window began {at:%b} {at.day}, {at:%H:%M} UTC"


def _channels(n: int) -> str:
    return f"{n} channel" if n == 1 else f"{n} channels"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _rate_fields(metric: str) -> tuple[str, str]:
    """(numerator field, denominator field) of a rate metric."""
    return {
        ERROR_RATE: ("errors", "responses"),
        NEGATIVE_REACTIONS: ("reactions_negative", "responses"),
        CORRECTIONS: ("corrections", "responses"),
        HALLUCINATIONS: ("hallucinations", "graded"),
    }[metric]


def _too_few_channels(
    spec: RuleSpec,
    control: Arm,
    treatment: Arm,
    c1: Clusters | None,
    c2: Clusters | None,
    numbers: dict[str, Any],
) -> Verdict | None:
    """The plain "too few channels to judge" verdict, or None when both arms have enough (or
    carry no per-channel totals)."""
    if c1 is None or c2 is None:
        return None
    numbers.update(channels_control=c1.channels, channels_treatment=c2.channels)
    numbers["min_channels"] = spec.min_channels
    if min(c1.channels, c2.channels) >= spec.min_channels:
        return None
    return Verdict(
        INSUFFICIENT,
        f"too few channels to judge: {c2.channels} on {treatment.variant}, {c1.channels} on "
        f"{control.variant} ({spec.min_channels} needed per variant). Whole channels are "
        f"assigned, so with fewer the difference could be the channels themselves.",
        numbers,
        treatment.variant,
    )


def evaluate_rate(
    spec: RuleSpec, control: Arm, treatment: Arm, *, alpha: float, p_min: float = 1.0
) -> Verdict:
    """A rate rule for one treatment variant; ``p_min`` is the running always-valid p-value."""
    num, den = _rate_fields(spec.metric)
    x1, n1 = getattr(control, num), getattr(control, den)
    x2, n2 = getattr(treatment, num), getattr(treatment, den)
    label = METRIC_LABELS[spec.metric]
    unit = "reviews" if den == "graded" else "replies"
    numbers: dict[str, Any] = {
        "metric": spec.metric,
        "control": control.variant,
        "treatment": treatment.variant,
        "x_control": x1,
        "n_control": n1,
        "x_treatment": x2,
        "n_treatment": n2,
        "rate_control": round(x1 / n1, 6) if n1 else None,
        "rate_treatment": round(x2 / n2, 6) if n2 else None,
        "margin": spec.threshold,
        "alpha": alpha,
        "min_samples": spec.min_samples,
    }
    if min(n1, n2) < spec.min_samples:
        return Verdict(
            INSUFFICIENT,
            f"{min(n1, n2)} of {spec.min_samples} {unit} needed per variant "
            f"({control.variant} {n1}, {treatment.variant} {n2}).",
            numbers,
            treatment.variant,
        )
    c1, c2 = control.clusters.get(num), treatment.clusters.get(num)
    short = _too_few_channels(spec, control, treatment, c1, c2, numbers)
    if short:
        return short
    variance = difference_variance(x1, n1, x2, n2, spec.threshold, c1, c2)
    result = msprt(
        x1, n1, x2, n2, margin=spec.threshold, tau=TAU[spec.metric], alpha=alpha, variance=variance
    )
    p_value = min(p_min, result.p_value)
    r1, r2 = x1 / n1, x2 / n2
    numbers.update(
        likelihood_ratio=round(result.likelihood_ratio, 4),
        p_value=round(p_value, 6),
        relative_change=round(r2 / r1 - 1, 4) if r1 else None,
        variance=variance,
        design_effect=round(variance / binomial_variance(x1, n1, x2, n2, spec.threshold), 3),
    )
    limit = f"{_pct(r1)} x {1 + spec.threshold:g}" if spec.threshold else _pct(r1)
    text = (
        f"{treatment.variant} {label} {_pct(r2)} vs {control.variant} {_pct(r1)} "
        f"(n={n2:,}/{n1:,} {unit}, always-valid p={p_value:.3g}, alpha={alpha:g})"
    )
    if result.rejected or p_value <= alpha and result.estimate > 0:
        return Verdict(BREACHED, text, numbers, treatment.variant)
    if result.estimate > 0:
        return Verdict(
            WARNING, f"{text}: above {limit}, not yet significant", numbers, treatment.variant
        )
    return Verdict(OK, text, numbers, treatment.variant)


def _latency_clusters(arm: Arm, threshold_ms: float) -> Clusters | None:
    """Per-channel replies at or above the threshold (None without per-channel histograms)."""
    if not arm.channel_latency:
        return None
    return Clusters.of(
        (exceedances(h, threshold_ms), sum(int(v) for v in h.values())) for h in arm.channel_latency
    )


def _latency_inputs(control: Arm, treatment: Arm, factor: float):
    """(p95 v1, p95 v2, limit, x1, x2, clusters1, clusters2): v1's replies in buckets above the
    one holding its p95, v2's at or above the limit, and the same per channel."""
    p95_1 = histogram.percentile(control.latency_hist, 0.95) or 0.0
    p95_2 = histogram.percentile(treatment.latency_hist, 0.95) or 0.0
    limit = factor * p95_1
    edge1 = histogram.bounds(histogram.bucket_of(p95_1))[1]
    edge2 = max(limit, edge1)
    x1 = exceedances(control.latency_hist, edge1)
    x2 = exceedances(treatment.latency_hist, edge2)
    c1 = _latency_clusters(control, edge1)
    c2 = _latency_clusters(treatment, edge2)
    return p95_1, p95_2, limit, x1, x2, c1, c2


def evaluate_latency(
    spec: RuleSpec, control: Arm, treatment: Arm, *, alpha: float, p_min: float = 1.0
) -> Verdict:
    n1, n2 = control.responses, treatment.responses
    factor = spec.threshold or 1.0
    numbers: dict[str, Any] = {
        "metric": spec.metric,
        "control": control.variant,
        "treatment": treatment.variant,
        "n_control": n1,
        "n_treatment": n2,
        "factor": factor,
        "alpha": alpha,
        "min_samples": spec.min_samples,
    }
    if min(n1, n2) < spec.min_samples:
        return Verdict(
            INSUFFICIENT,
            f"{min(n1, n2)} of {spec.min_samples} replies needed per variant "
            f"({control.variant} {n1}, {treatment.variant} {n2}).",
            numbers,
            treatment.variant,
        )
    p95_1, p95_2, limit, x1, x2, c1, c2 = _latency_inputs(control, treatment, factor)
    short = _too_few_channels(spec, control, treatment, c1, c2, numbers)
    if short:
        return short
    variance = difference_variance(x1, n1, x2, n2, 0.0, c1, c2)
    result = msprt(x1, n1, x2, n2, margin=0.0, tau=TAU[LATENCY_P95], alpha=alpha, variance=variance)
    p_value = min(p_min, result.p_value)
    numbers.update(
        p95_control_ms=p95_1,
        p95_treatment_ms=p95_2,
        limit_ms=round(limit, 1),
        x_control=x1,
        x_treatment=x2,
        likelihood_ratio=round(result.likelihood_ratio, 4),
        p_value=round(p_value, 6),
    )
    text = (
        f"{treatment.variant} p95 {p95_2:,.0f} ms vs {control.variant} {p95_1:,.0f} ms "
        f"(limit {factor:g}x = {limit:,.0f} ms; {x2}/{n2} v2 replies slower vs {x1}/{n1}; "
        f"always-valid p={p_value:.3g}, alpha={alpha:g})"
    )
    if result.rejected or p_value <= alpha and result.estimate > 0:
        return Verdict(BREACHED, text, numbers, treatment.variant)
    if p95_2 > limit:
        return Verdict(
            WARNING, f"{text}: above the limit, not yet significant", numbers, treatment.variant
        )
    return Verdict(OK, text, numbers, treatment.variant)


@dataclass(frozen=True)
class Traffic:
    """Every variant's replies and spend over ``hours`` (the last day, or since the first reply
    when the bot is younger): the traffic a daily cost scales."""

    replies: int
    cost_usd: float
    hours: float


def evaluate_cost(
    spec: RuleSpec,
    arms: Mapping[str, Arm],
    treatments: list[str],
    *,
    window_hours: float,
    traffic: Traffic | None = None,
) -> Verdict:
    """Daily cost if every channel got v2: v2's cost per reply (over the window) x all replies
    per day. ``traffic``: the replies and spend of every variant over the last day, which the
    per-day figures scale when given; without it they scale the window's own, which a window of
    minutes (right after a phase change or re-enable) turns into a burst read as a day."""
    budget = spec.threshold
    all_replies = sum(a.responses for a in arms.values())
    v2_replies = sum(arms[v].responses for v in treatments if v in arms)
    v2_cost = sum(arms[v].cost_usd for v in treatments if v in arms)
    actual = sum(a.cost_usd for a in arms.values())
    numbers: dict[str, Any] = {
        "metric": spec.metric,
        "budget_usd": budget,
        "window_hours": round(window_hours, 2),
        "v2_replies": v2_replies,
        "all_replies": all_replies,
        "actual_cost_usd": round(actual, 4),
        "min_samples": spec.min_samples,
    }
    if v2_replies < spec.min_samples or window_hours <= 0:
        return Verdict(
            INSUFFICIENT, f"{v2_replies} of {spec.min_samples} v2 replies needed.", numbers, None
        )
    per_reply = v2_cost / v2_replies
    if traffic is not None and traffic.hours > 0:
        replies_per_day = traffic.replies * 24.0 / traffic.hours
        spend_per_day = traffic.cost_usd * 24.0 / traffic.hours
        numbers["traffic_hours"] = round(traffic.hours, 2)
    else:
        replies_per_day = all_replies * 24.0 / window_hours
        spend_per_day = actual * 24.0 / window_hours
    projected = per_reply * replies_per_day
    numbers.update(
        cost_per_v2_reply_usd=round(per_reply, 6),
        replies_per_day=round(replies_per_day, 1),
        projected_daily_usd=round(projected, 2),
        actual_daily_usd=round(spend_per_day, 2),
    )
    text = (
        f"daily cost at 100% v2 ${projected:,.2f} vs budget ${budget:,.2f} "
        f"(${per_reply:.5f} per v2 reply x {replies_per_day:,.0f} replies/day; "
        f"spend now ${spend_per_day:,.2f}/day)"
    )
    if projected > budget:
        return Verdict(BREACHED, text, numbers, None)
    if projected >= COST_WARNING_SHARE * budget:
        return Verdict(
            WARNING, f"{text}: above {COST_WARNING_SHARE:.0%} of the budget", numbers, None
        )
    return Verdict(OK, text, numbers, None)


def binomial_tail(e: int, j: int, p: float) -> float:
    """P(Bin(j, p) >= e), summed from the smaller side."""
    if e <= 0:
        return 1.0
    if e > j:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0

    def term(i: int) -> float:
        return math.exp(
            math.lgamma(j + 1)
            - math.lgamma(i + 1)
            - math.lgamma(j - i + 1)
            + i * math.log(p)
            + (j - i) * math.log1p(-p)
        )

    if e > j * p:
        return min(1.0, sum(term(i) for i in range(e, j + 1)))
    return max(0.0, 1.0 - sum(term(i) for i in range(e)))


@dataclass(frozen=True, slots=True)
class CrashScan:
    """The crash guard's scan of v2's most recent replies (see ``crash_scan``)."""

    replies: int  # v2 replies in the lookback
    errors: int
    p0: float  # the error rate tested against
    tail: float  # smallest binomial tail over the runs of most recent replies starting at an error
    run_replies: int  # the run that gave it: its replies, errors and channels with an error
    run_errors: int
    run_channels: int
    adjusted: float  # tail x replies (Bonferroni over the runs), capped at 1


def _binomial_term(e: int, j: int, p: float) -> float:
    """P(Bin(j, p) = e): a lower bound of P(Bin(j, p) >= e)."""
    return math.exp(
        math.lgamma(j + 1) - math.lgamma(e + 1) - math.lgamma(j - e + 1)
        + e * math.log(p) + (j - e) * math.log1p(-p)
    )  # fmt: skip


def crash_scan(
    recent: Sequence[tuple[str, bool]], p0: float, *, min_errors: int, alpha: float = 1.0
) -> CrashScan:
    """Scan v2's most recent replies, ``recent`` as (channel, is_error) oldest first.

    Each run of the most recent replies that starts at an error (the last j replies, holding e
    errors) gets P(Bin(j, p0) >= e); runs with fewer than ``min_errors`` errors, or whose errors
    all come from one channel while v2 replied in several, are not counted (one channel's bad
    hour is not a crash of v2). The smallest tail wins. Runs at or below p0, and runs whose
    tail cannot reach ``alpha`` once adjusted (its first term is already above it), are skipped
    (their exact tail is not needed; ``tail`` stays 1 when no run could reach it)."""
    n = len(recent)
    errors = sum(e for _c, e in recent)
    best = CrashScan(n, errors, p0, 1.0, 0, 0, 0, 1.0)
    if errors < min_errors:
        return best
    several: bool | None = None  # did v2 reply in more than one channel? (asked when needed)
    limit = alpha / n
    e = 0
    channels: set[str] = set()
    for j, (channel, is_error) in enumerate(reversed(recent), start=1):
        if not is_error:
            continue
        e += 1
        channels.add(channel)
        if e < min_errors or e <= j * p0:
            continue
        if len(channels) < 2:
            if several is None:
                several = len({c for c, _e in recent}) > 1
            if several:
                continue
        if alpha < 1.0 and 0 < p0 < 1 and _binomial_term(e, j, p0) > limit:
            continue  # its tail is at least that term: it cannot reach alpha
        tail = binomial_tail(e, j, p0)
        if tail < best.tail:
            best = CrashScan(n, errors, p0, tail, j, e, len(channels), min(1.0, tail * n))
    return best


@dataclass(frozen=True, slots=True)
class CrashOnset:
    """The crash guard's onset test over v2's first replies of the window (``crash_onset``)."""

    replies: int  # v2's first replies read (at most CRASH_ONSET_REPLIES)
    errors: int
    likelihood_ratio: float  # the largest over the prefixes that may count (1 if none)
    at_reply: int  # the prefix that gave it: its replies, errors and channels with an error
    at_errors: int
    at_channels: int
    crossed: bool  # it reached 1/alpha


def crash_onset(
    first: Sequence[tuple[str, bool]],
    p0: float,
    *,
    min_errors: int,
    alpha: float,
    rates: Sequence[float] = CRASH_ONSET_RATES,
) -> CrashOnset:
    """A sequential probability ratio test from the start of the evidence window: v2's first
    replies ``first`` as (channel, is_error), oldest first. After k replies with e errors,

        L_k = mean over p in ``rates`` of (p / p0)^e ((1 - p) / (1 - p0))^(k - e)

    is a nonnegative martingale with mean 1 when each reply fails with probability p0 (a
    supermartingale at any rate below it), so by Ville's inequality the chance that it *ever*
    reaches 1/alpha is at most alpha, for the whole phase however often it is looked at; it
    counts every prefix (the path), not only the last. A prefix counts once it holds
    ``min_errors`` errors from at least two channels (from one when all of ``first`` is from
    one channel), as in the scan. Two errors in v2's first two replies give 41 against
    p0 = 10% (the line at alpha 5%: 20), two in three 11.6; a crash from the start is caught on
    its first few errors, where the scan of the last hour, restarting at every reply, must ask
    for more."""
    if not 0 < p0 < 1:
        return CrashOnset(len(first), sum(e for _c, e in first), 1.0, 0, 0, 0, False)
    up = [math.log(p / p0) for p in rates]
    down = [math.log1p(-p) - math.log1p(-p0) for p in rates]
    line = math.log(1 / alpha)
    logs = [0.0] * len(rates)
    errors = 0
    several = len({c for c, _e in first}) > 1
    failed: set[str] = set()
    best = (-math.inf, 0, 0, 0)
    for k, (channel, is_error) in enumerate(first, start=1):
        if is_error:
            errors += 1
            failed.add(channel)
        step = up if is_error else down
        logs = [x + d for x, d in zip(logs, step, strict=True)]
        if errors < max(1, min_errors) or (several and len(failed) < 2):
            continue
        top = max(logs)
        log_lr = top + math.log(math.fsum(math.exp(x - top) for x in logs) / len(logs))
        if log_lr > best[0]:
            best = (log_lr, k, errors, len(failed))
    log_lr, k, e, c = best
    lr = math.exp(min(log_lr, 700.0)) if k else 1.0
    return CrashOnset(len(first), errors, lr, k, e, c, bool(k) and log_lr >= line)


def evaluate_crash(
    spec: RuleSpec,
    recent: Sequence[tuple[str, bool]],
    control: tuple[int, int] | None = None,
    *,
    first: Sequence[tuple[str, bool]] | None = None,
    lookback_minutes: float = CRASH_LOOKBACK_MINUTES,
    control_variant: str = "v1",
    window_start: datetime | None = None,
) -> Verdict:
    """The crash guard: v2's most recent replies (oldest first, over the last
    ``lookback_minutes`` of the evidence window) against an absolute error rate
    (``spec.threshold``), or v1's over the same minutes when higher (``control`` = (errors,
    replies) of v1 there, used from ``CRASH_CONTROL_FLOOR`` replies); and v2's first replies of
    the window (``first``, up to ``CRASH_ONSET_REPLIES``) against the same rate. Breached when
    the scan's p-value is at most ``spec.alpha`` (with at least ``CRASH_SCAN_MIN_ERRORS``
    errors, and the floor) or the onset test's likelihood ratio reaches 1/alpha;
    ``spec.min_samples`` is the errors needed (the floor). ``window_start``: where the evidence
    window began, said when v2 has no reply in it yet."""
    p_abs = spec.threshold or 0.10
    x1, n1 = control or (0, 0)
    p1 = x1 / n1 if n1 >= CRASH_CONTROL_FLOOR else None
    p0 = max(p_abs, p1) if p1 is not None else p_abs
    floor = max(1, spec.min_samples)
    scan = crash_scan(recent, p0, min_errors=max(floor, CRASH_SCAN_MIN_ERRORS), alpha=spec.alpha)
    onset = crash_onset(first or (), p0, min_errors=floor, alpha=spec.alpha)
    rate = scan.errors / scan.replies if scan.replies else None
    numbers: dict[str, Any] = {
        "metric": CRASH,
        "lookback_minutes": lookback_minutes,
        "replies": scan.replies,
        "errors": scan.errors,
        "rate_treatment": round(rate, 6) if rate is not None else None,
        "x_control": x1,
        "n_control": n1,
        "rate_control": round(p1, 6) if p1 is not None else None,
        "threshold": p_abs,
        "p0": round(p0, 6),
        "min_errors": spec.min_samples,
        "alpha": spec.alpha,
        "tail": scan.tail,
        "p_value": round(scan.adjusted, 8),
        "run_replies": scan.run_replies,
        "run_errors": scan.run_errors,
        "run_channels": scan.run_channels,
        "onset_replies": onset.replies,
        "onset_errors": onset.errors,
        "onset_likelihood_ratio": round(onset.likelihood_ratio, 6),
        "onset_at_reply": onset.at_reply,
        "onset_at_errors": onset.at_errors,
        "onset_at_channels": onset.at_channels,
    }
    against = (
        f"{_pct(p0)} ({control_variant}'s rate then)"
        if p1 is not None and p1 > p_abs
        else f"{_pct(p0)}"
    )
    if onset.crossed:
        return Verdict(
            BREACHED,
            f"v2's first replies of the window fail: {onset.at_errors} errors in its first "
            f"{onset.at_reply} replies from {_channels(onset.at_channels)} against {against} "
            f"(likelihood ratio {onset.likelihood_ratio:.3g} >= 1/alpha = {1 / spec.alpha:g})",
            numbers,
        )
    if not scan.replies and not onset.replies:
        began = window_began(window_start)
        return Verdict(OK, f"no v2 replies yet{f' ({began})' if began else ''}.", numbers)
    if rate is None:  # no v2 replies in the last lookback_minutes
        text = f"no v2 replies in the last {lookback_minutes:g} minutes: nothing crashing."
        return Verdict(OK, text, numbers)
    text = (
        f"v2 error rate {_pct(rate)} over its last {scan.replies:,} replies "
        f"({scan.errors} errors in {lookback_minutes:g} min) against {against}"
    )
    if scan.adjusted <= spec.alpha:
        return Verdict(
            BREACHED,
            f"{text}: {scan.run_errors} errors in its last {scan.run_replies} replies from "
            f"{_channels(scan.run_channels)} (p={scan.adjusted:.3g} adjusted, "
            f"alpha={spec.alpha:g})",
            numbers,
        )
    if rate is not None and rate > p0:
        return Verdict(WARNING, f"{text}: above it, not yet conclusive", numbers)
    return Verdict(OK, text, numbers)


_SEVERITY = {OFF: 0, OK: 1, INSUFFICIENT: 2, WARNING: 3, BREACHED: 4}


def evaluate(
    spec: RuleSpec,
    arms: Mapping[str, Arm],
    *,
    control: str,
    treatments: list[str],
    window_hours: float = 24.0,
    p_min: Mapping[str, float] | None = None,
    window_start: datetime | None = None,
    traffic: Traffic | None = None,
) -> Verdict:
    """Evaluate a rule over the window's figures per variant.

    ``treatments`` are the rollout's treatment variants (alpha is split between them);
    ``p_min`` the running always-valid p-values per treatment variant from earlier looks in the
    same window. Of the treatment variants with traffic, the most severe verdict wins; when none
    has traffic, the rule has not enough data (and says since when it counts: ``window_start``).
    """
    if spec.metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; {spec.metric!r} is not.")
    if spec.metric == DAILY_COST:
        return evaluate_cost(spec, arms, treatments, window_hours=window_hours, traffic=traffic)
    if spec.metric == CRASH:
        raise ValueError("the crash guard reads recent replies: call evaluate_crash.")
    alpha = spec.alpha / max(1, len(treatments))
    base = arms.get(control) or Arm(control)
    p_min = p_min or {}
    verdicts = []
    for variant in treatments:
        arm = arms.get(variant)
        if arm is None or (arm.responses == 0 and arm.graded == 0):
            continue
        fn = evaluate_latency if spec.metric == LATENCY_P95 else evaluate_rate
        verdicts.append(fn(spec, base, arm, alpha=alpha, p_min=p_min.get(variant, 1.0)))
    if not verdicts:
        unit = "reviews" if spec.metric == HALLUCINATIONS else "replies"
        began = window_began(window_start)
        return Verdict(
            INSUFFICIENT,
            f"no {unit} from {' or '.join(treatments)} yet "
            f"({f'{began}; ' if began else ''}{spec.min_samples} needed per variant).",
            {"metric": spec.metric, "min_samples": spec.min_samples},
        )
    worst = max(verdicts, key=lambda v: _SEVERITY[v.status])
    if len(verdicts) > 1:
        worst.numbers["p_values"] = {
            v.variant: v.numbers.get("p_value")
            for v in verdicts
            if v.numbers.get("p_value") is not None
        }
    return worst


def running_p_values(verdict: Verdict, previous: Mapping[str, float]) -> dict[str, float]:
    """The running minimum of the always-valid p-values per treatment variant."""
    out = dict(previous)
    for variant, p in (verdict.numbers.get("p_values") or {}).items():
        out[variant] = min(out.get(variant, 1.0), p)
    if verdict.variant and verdict.numbers.get("p_value") is not None:
        out[verdict.variant] = min(out.get(verdict.variant, 1.0), verdict.numbers["p_value"])
    return out


@dataclass(frozen=True, slots=True)
class Bound:
    """A rule's always-valid confidence interval for one treatment variant.

    ``estimate``, ``lo`` and ``hi`` are on the rule's scale, theta = p2 - (1 + margin) p1 (for
    latency: v2's share above the limit minus v1's share above its p95). The interval holds
    theta with probability 1 - alpha at every look at once (the mSPRT's confidence sequence),
    so the rule "holds" when ``hi <= 0``, "fails" when ``lo > 0``, else it is not yet known.
    ``floor_met`` is False below the data floor or the channel floor (``floor`` says which, in
    a sentence); the interval is then still given when both arms have data, but should not be
    read as a verdict."""

    metric: str
    variant: str
    control: str
    estimate: float | None
    lo: float | None
    hi: float | None
    alpha: float
    floor_met: bool
    floor: str
    n_control: int
    n_treatment: int
    channels_control: int | None
    channels_treatment: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def always_valid_bounds(
    spec: RuleSpec, arms: Mapping[str, Arm], *, control: str, treatments: list[str]
) -> list[Bound]:
    """Per treatment variant with data, the always-valid (cluster-robust) confidence interval of
    the rule's difference and whether its floors are met; [] for cost and the crash guard,
    which are not comparisons. Stable: the console's success criteria read it."""
    if spec.metric not in TAU:
        return []
    alpha = spec.alpha / max(1, len(treatments))
    base = arms.get(control) or Arm(control)
    out = []
    for variant in treatments:
        arm = arms.get(variant)
        if arm is None or (arm.responses == 0 and arm.graded == 0):
            continue
        if spec.metric == LATENCY_P95:
            n1, n2, margin = base.responses, arm.responses, 0.0
            _a, _b, _l, x1, x2, c1, c2 = _latency_inputs(base, arm, spec.threshold or 1.0)
        else:
            num, den = _rate_fields(spec.metric)
            x1, n1 = getattr(base, num), getattr(base, den)
            x2, n2 = getattr(arm, num), getattr(arm, den)
            c1, c2 = base.clusters.get(num), arm.clusters.get(num)
            margin = spec.threshold
        floor = ""
        if min(n1, n2) < spec.min_samples:
            floor = f"{min(n1, n2)} of {spec.min_samples} needed per variant"
        elif c1 and c2 and min(c1.channels, c2.channels) < spec.min_channels:
            floor = (
                f"too few channels: {c2.channels} on {variant}, {c1.channels} on {control} "
                f"({spec.min_channels} needed per variant)"
            )
        estimate = lo = hi = None
        if n1 > 0 and n2 > 0:
            estimate = x2 / n2 - (1 + margin) * x1 / n1
            variance = difference_variance(x1, n1, x2, n2, margin, c1, c2)
            half = always_valid_halfwidth(variance, tau=TAU[spec.metric], alpha=alpha)
            lo, hi = estimate - half, estimate + half
        out.append(
            Bound(
                spec.metric,
                variant,
                control,
                estimate,
                lo,
                hi,
                alpha,
                not floor,
                floor,
                int(n1),
                int(n2),
                c1.channels if c1 is not None else None,
                c2.channels if c2 is not None else None,
            )
        )
    return out
