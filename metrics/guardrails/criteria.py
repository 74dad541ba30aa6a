"""Success criteria of a phase: does each guardrail *hold*, is it *not yet known*, or *fail*?

A guardrail watches for a regression and rolls back once the evidence shows one; a success
criterion asks the opposite question before the rollout moves on: does the evidence *rule out*
that regression? Absence of alarm is not that: "errors: v2 1.3% vs v1 1.2%, p=1" is noise, and
so is a count below the data floor. For each guardrail that applies in the current phase:

- **holds**: the data floor is met and the always-valid upper confidence bound of
  theta = p2 - (1 + margin) p1 (``metrics.guardrails.rules.always_valid_bound``, the confidence
  sequence that inverts the guardrail's own mSPRT, valid however often it is looked at) is below
  the rule's tolerance: the regression the rule guards against is ruled out;
- **fails**: the guardrail breached in this window, or the always-valid lower bound is above the
  tolerance: the regression is there;
- **not yet known**: anything else (below the data floor, or the interval still straddles the
  tolerance); the page says how far the bound is and about how much more data would settle it.

The tolerance ``TOLERANCE`` is the smallest regression worth blocking an advance for, in
proportion points on top of the rule's own margin (a "v2 above v1" rule has margin 0: without a
tolerance a v2 exactly as good as v1 could never be shown to hold). Latency compares the share
of v2 replies slower than the rule's limit with v1's share above its own p95; cost is measured,
not estimated: it holds when the projected daily cost at 100% v2 is within the budget.

A healthy v2 reaches "holds" once the data is there (tests/metrics/guardrails/test_criteria.py
simulates it); the gate (``metrics.guardrails.gate``, registered with ``rollout.gates`` by
metrics' AppConfig) turns every criterion that does not hold into a problem an advance must
override with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import rules as g

HOLDS = "holds"
UNKNOWN = "not yet known"
FAILS = "fails"

# The smallest regression worth blocking for, in proportion points, on top of the rule's margin.
TOLERANCE = {
    g.ERROR_RATE: 0.01,
    g.NEGATIVE_REACTIONS: 0.01,
    g.CORRECTIONS: 0.01,
    g.HALLUCINATIONS: 0.05,
    g.LATENCY_P95: 0.01,
}


@dataclass(slots=True)
class Criterion:
    """One guardrail seen as a success criterion: its status and why, in a sentence."""

    key: str
    question: str
    status: str
    why: str
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status == HOLDS


def _pts(x: float) -> str:
    return f"{x * 100:+.2f} pts"


def question(spec: g.RuleSpec) -> str:
    """What must be ruled out, in words, e.g. 'error rate of v2 at most v1's + 1.00 pts'."""
    label = g.METRIC_LABELS[spec.metric]
    if spec.metric == g.DAILY_COST:
        return f"{label} within the ${spec.threshold:,.2f} budget"
    tol = TOLERANCE[spec.metric] * 100
    if spec.metric == g.LATENCY_P95:
        factor = spec.threshold or 1
        return f"v2 replies slower than {factor:g}x v1's p95 at most {tol:g} pts above v1's 5%"
    base = f"{1 + spec.threshold:g} x v1's" if spec.threshold else "v1's"
    return f"{label} of v2 at most {base} + {tol:g} pts"


def _more_needed(n: int, half: float, room: float) -> int | None:
    """About how many more per variant would shrink the half-width to ``room`` (~ 1/sqrt n)."""
    if room <= 0 or half <= 0 or not math.isfinite(half):
        return None
    return max(0, math.ceil(n * (half / room) ** 2) - n)


def _from_bound(
    spec: g.RuleSpec,
    x1: int,
    n1: int,
    x2: int,
    n2: int,
    *,
    margin: float,
    alpha: float,
    unit: str,
    clusters: tuple[g.Clusters | None, g.Clusters | None] = (None, None),
) -> tuple[str, str, dict]:
    tol = TOLERANCE[spec.metric]
    bound = g.always_valid_bound(
        x1,
        n1,
        x2,
        n2,
        margin=margin,
        tau=g.TAU[spec.metric],
        alpha=alpha,
        clusters1=clusters[0],
        clusters2=clusters[1],
    )
    numbers: dict[str, float | None] = {
        "estimate": round(bound.estimate, 6),
        "lower": round(bound.lower, 6),
        "upper": round(bound.upper, 6),
        "tolerance": tol,
        "alpha": alpha,
    }
    interval = (
        f"always-valid {1 - alpha:.1%} interval of the excess {_pts(bound.lower)} to "
        f"{_pts(bound.upper)}, tolerance {_pts(tol)}"
    )
    if bound.upper < tol:
        return HOLDS, f"ruled out: {interval} (n={n2:,}/{n1:,} {unit})", numbers
    if bound.lower > tol:
        return FAILS, f"regression shown: {interval} (n={n2:,}/{n1:,} {unit})", numbers
    half = (bound.upper - bound.lower) / 2
    more = _more_needed(min(n1, n2), half, tol - bound.estimate)
    numbers["more_needed"] = more
    tail = f"; about {more:,} more {unit} per variant would settle it" if more else ""
    return UNKNOWN, f"not ruled out yet: {interval} (n={n2:,}/{n1:,} {unit}){tail}", numbers


def _floor(spec: g.RuleSpec, control: g.Arm, arm: g.Arm) -> str | None:
    unit = "reviews" if spec.metric == g.HALLUCINATIONS else "replies"
    field_name = "graded" if spec.metric == g.HALLUCINATIONS else "responses"
    n1, n2 = getattr(control, field_name), getattr(arm, field_name)
    if min(n1, n2) >= spec.min_samples:
        return _channel_floor(spec, control, arm)
    return (
        f"below the data floor: {min(n1, n2):,} of {spec.min_samples:,} {unit} per variant "
        f"({control.variant} {n1:,}, {arm.variant} {n2:,})"
    )


def _channel_floor(spec: g.RuleSpec, control: g.Arm, arm: g.Arm) -> str | None:
    """Channels are the unit of variance (whole channels are assigned): with fewer than the
    rule's channel floor on either side there is too little to judge, however many replies."""
    if spec.metric == g.HALLUCINATIONS:
        return None
    if not control.clusters or not arm.clusters:
        return None  # no per-channel totals: replies are treated as independent
    ch1 = max(c.channels for c in control.clusters.values())
    ch2 = max(c.channels for c in arm.clusters.values())
    if min(ch1, ch2) >= spec.min_channels:
        return None
    return (
        f"too few channels to judge: {ch2} on {arm.variant}, {ch1} on "
        f"{control.variant} ({spec.min_channels} needed per variant)"
    )


def _assess_arm(
    spec: g.RuleSpec, control: g.Arm, arm: g.Arm, alpha: float
) -> tuple[str, str, dict]:
    short = _floor(spec, control, arm)
    if short:
        return UNKNOWN, short, {}
    if spec.metric == g.LATENCY_P95:
        *_, x1, x2, c1, c2 = g._latency_inputs(control, arm, spec.threshold or 1.0)
        return _from_bound(
            spec,
            x1,
            control.responses,
            x2,
            arm.responses,
            margin=0.0,
            alpha=alpha,
            unit="replies",
            clusters=(c1, c2),
        )
    num, den = {
        g.ERROR_RATE: ("errors", "responses"),
        g.NEGATIVE_REACTIONS: ("reactions_negative", "responses"),
        g.CORRECTIONS: ("corrections", "responses"),
        g.HALLUCINATIONS: ("hallucinations", "graded"),
    }[spec.metric]
    return _from_bound(
        spec,
        getattr(control, num),
        getattr(control, den),
        getattr(arm, num),
        getattr(arm, den),
        margin=spec.threshold,
        alpha=alpha,
        unit="reviews" if den == "graded" else "replies",
        clusters=(control.clusters.get(num), arm.clusters.get(num)),
    )


def _assess_cost(
    spec: g.RuleSpec,
    arms: Mapping[str, g.Arm],
    treatments: list[str],
    hours: float,
    traffic: g.Traffic | None,
):
    verdict = g.evaluate_cost(spec, arms, treatments, window_hours=hours, traffic=traffic)
    if verdict.status == g.INSUFFICIENT:
        return UNKNOWN, f"below the data floor: {verdict.summary}", verdict.numbers
    if verdict.status == g.BREACHED:
        return FAILS, f"over budget: {verdict.summary}", verdict.numbers
    return HOLDS, f"within budget: {verdict.summary}", verdict.numbers


_ORDER = {FAILS: 0, UNKNOWN: 1, HOLDS: 2}


def is_criterion(metric: str) -> bool:
    """Comparisons and the cost budget are success criteria; the crash guard is not: it is an
    alarm on v2's most recent replies (a breach engages the kill switch, which stops any
    advance anyway), not evidence about the phase's window."""
    return metric in TOLERANCE or metric == g.DAILY_COST


def assess(
    key: str,
    spec: g.RuleSpec,
    arms: Mapping[str, g.Arm],
    *,
    control: str,
    treatments: list[str],
    window_hours: float,
    breached: str = "",
    since: datetime | None = None,
    traffic: g.Traffic | None = None,
) -> Criterion:
    """One criterion from the figures per variant (pure). ``breached``: the guardrail's summary
    when it breached in this window (then the criterion fails whatever the figures say now).
    With two treatment variants alpha is split as the guardrail splits it; each must hold."""
    ask = question(spec)
    if breached:
        return Criterion(key, ask, FAILS, f"the guardrail breached in this window: {breached}")
    if spec.metric == g.DAILY_COST:
        status, why, numbers = _assess_cost(spec, arms, treatments, window_hours, traffic)
        return Criterion(key, ask, status, why, numbers)
    alpha = spec.alpha / max(1, len(treatments))
    control_arm = arms.get(control) or g.Arm(control)
    results = []
    for variant in treatments:
        arm = arms.get(variant)
        if arm is None or (arm.responses == 0 and arm.graded == 0):
            continue
        status, why, numbers = _assess_arm(spec, control_arm, arm, alpha)
        results.append((status, f"{variant}: {why}", {**numbers, "variant": variant}))
    if not results:
        began = f" ({g.window_began(since)})" if since is not None else ""
        return Criterion(key, ask, UNKNOWN, f"no data from {' or '.join(treatments)} yet{began}")
    worst = min(results, key=lambda r: _ORDER[r[0]])
    why = "; ".join(r[1] for r in results) if len(results) > 1 else worst[1]
    return Criterion(key, ask, worst[0], why, worst[2])
