"""Guardrail rules: pure evaluation and the sequential test (no database; see docs/guardrails.md).

A rule compares the treatment variants (v2) with the control (v1) over the rule's *evidence
window* (from the start of the current exposure, see ``metrics.guardrail_services``) and says one
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

Cost is measured, not estimated: the daily cost if every channel got v2 (v2's cost per reply x
all replies per day, over the trailing 24 hours or the window if shorter, scaled to a day) is
compared with the budget: warning at 80% of it, breached above it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import histogram

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
METRICS = (ERROR_RATE, NEGATIVE_REACTIONS, CORRECTIONS, HALLUCINATIONS, LATENCY_P95, DAILY_COST)

METRIC_LABELS = {
    ERROR_RATE: "error rate",
    NEGATIVE_REACTIONS: "negative-reaction rate",
    CORRECTIONS: "correction rate",
    HALLUCINATIONS: "hallucination rate",
    LATENCY_P95: "p95 latency",
    DAILY_COST: "daily cost at 100% v2",
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


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What a rule asks; built from a GuardrailRule row or by hand in tests and the benchmark.

    ``threshold`` means: the relative margin for rates (0.10 = "up more than 10%"; 0 = "above
    v1"), the factor for latency (1.5 = "p95 more than 1.5x v1's"), dollars per day for cost.
    ``min_samples``: replies per variant (reviews per variant for hallucinations) before the
    rule may judge.
    """

    metric: str
    threshold: float = 0.0
    min_samples: int = 200
    alpha: float = DEFAULT_ALPHA


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
) -> SequentialResult:
    """The one-sided mSPRT of p2 > (1 + margin) p1 (x successes out of n per arm; see module)."""
    if n1 <= 0 or n2 <= 0:
        return SequentialResult(0.0, 1.0, 1.0, False)
    k = 1.0 + margin
    p1, p2 = x1 / n1, x2 / n2
    s1, s2 = _smoothed(x1, n1), _smoothed(x2, n2)
    variance = s2 * (1 - s2) / n2 + k * k * s1 * (1 - s1) / n1
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


def difference_variance(
    x1: float, n1: float, x2: float, n2: float, *, margin: float = 0.0
) -> float:
    """The plug-in variance of theta_hat = p2 - (1 + margin) p1 used by the mSPRT (each rate
    smoothed by half a count). One place, so the test and its confidence sequence agree."""
    k = 1.0 + margin
    s1, s2 = _smoothed(x1, n1), _smoothed(x2, n2)
    return s2 * (1 - s2) / n2 + k * k * s1 * (1 - s1) / n1


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
) -> ConfidenceBound:
    """The confidence sequence that inverts the mSPRT: every theta0 the test would not reject.

    With the same normal mixture as ``msprt``, Lambda(theta0) < 1/alpha exactly when
    (theta_hat - theta0)^2 < 2 V (V + tau^2) / tau^2 * (log(1/alpha) + log((V + tau^2) / V) / 2),
    so [theta_hat - h, theta_hat + h] with that half-width h covers the true difference at every
    look at once with probability at least 1 - alpha (Howard et al. 2021; Johari et al. 2022).
    With no data in an arm the bound is the whole line.
    """
    if n1 <= 0 or n2 <= 0:
        return ConfidenceBound(0.0, -math.inf, math.inf)
    k = 1.0 + margin
    theta = x2 / n2 - k * x1 / n1
    variance = difference_variance(x1, n1, x2, n2, margin=margin)
    t2 = tau * tau
    half = math.sqrt(
        2 * variance * (variance + t2) / t2
        * (math.log(1.0 / alpha) + 0.5 * math.log((variance + t2) / variance))
    )
    return ConfidenceBound(theta, theta - half, theta + half)


def exceedances(hist: Mapping, threshold_ms: float) -> int:
    """Replies in buckets wholly at or above ``threshold_ms`` (a straddling one is not counted)."""
    total = 0
    for key, count in hist.items():
        lo, _hi = histogram.bounds(int(key))
        if lo >= threshold_ms:
            total += int(count)
    return total


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
    result = msprt(x1, n1, x2, n2, margin=spec.threshold, tau=TAU[spec.metric], alpha=alpha)
    p_value = min(p_min, result.p_value)
    r1, r2 = x1 / n1, x2 / n2
    numbers.update(
        likelihood_ratio=round(result.likelihood_ratio, 4),
        p_value=round(p_value, 6),
        relative_change=round(r2 / r1 - 1, 4) if r1 else None,
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
    p95_1 = histogram.percentile(control.latency_hist, 0.95) or 0.0
    p95_2 = histogram.percentile(treatment.latency_hist, 0.95) or 0.0
    limit = factor * p95_1
    # buckets above the one holding v1's p95, and v2's buckets at or above the limit
    x1 = exceedances(control.latency_hist, histogram.bounds(histogram.bucket_of(p95_1))[1])
    x2 = exceedances(
        treatment.latency_hist, max(limit, histogram.bounds(histogram.bucket_of(p95_1))[1])
    )
    result = msprt(x1, n1, x2, n2, margin=0.0, tau=TAU[LATENCY_P95], alpha=alpha)
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


def evaluate_cost(
    spec: RuleSpec, arms: Mapping[str, Arm], treatments: list[str], *, window_hours: float
) -> Verdict:
    """Daily cost if every channel got v2: v2's cost per reply x all replies per day."""
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
    replies_per_day = all_replies * 24.0 / window_hours
    projected = per_reply * replies_per_day
    numbers.update(
        cost_per_v2_reply_usd=round(per_reply, 6),
        replies_per_day=round(replies_per_day, 1),
        projected_daily_usd=round(projected, 2),
        actual_daily_usd=round(actual * 24.0 / window_hours, 2),
    )
    text = (
        f"daily cost at 100% v2 ${projected:,.2f} vs budget ${budget:,.2f} "
        f"(${per_reply:.5f} per v2 reply x {replies_per_day:,.0f} replies/day; "
        f"spend now ${actual * 24.0 / window_hours:,.2f}/day)"
    )
    if projected > budget:
        return Verdict(BREACHED, text, numbers, None)
    if projected >= COST_WARNING_SHARE * budget:
        return Verdict(
            WARNING, f"{text}: above {COST_WARNING_SHARE:.0%} of the budget", numbers, None
        )
    return Verdict(OK, text, numbers, None)


_SEVERITY = {OFF: 0, OK: 1, INSUFFICIENT: 2, WARNING: 3, BREACHED: 4}


def evaluate(
    spec: RuleSpec,
    arms: Mapping[str, Arm],
    *,
    control: str,
    treatments: list[str],
    window_hours: float = 24.0,
    p_min: Mapping[str, float] | None = None,
) -> Verdict:
    """Evaluate a rule over the window's figures per variant.

    ``treatments`` are the rollout's treatment variants (alpha is split between them);
    ``p_min`` the running always-valid p-values per treatment variant from earlier looks in the
    same window. Of the treatment variants with traffic, the most severe verdict wins; when none
    has traffic, the rule has not enough data.
    """
    if spec.metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; {spec.metric!r} is not.")
    if spec.metric == DAILY_COST:
        return evaluate_cost(spec, arms, treatments, window_hours=window_hours)
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
        return Verdict(
            INSUFFICIENT,
            f"no {unit} from {' or '.join(treatments)} yet "
            f"({spec.min_samples} needed per variant).",
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
