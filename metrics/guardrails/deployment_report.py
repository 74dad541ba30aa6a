"""The guide's post-deployment review: after 30 days at 100%, the figures for the decision.

``build(rollout, now)`` returns a JSON-ready dict (the report page, its Markdown and JSON
downloads, and the snapshot kept with a decision all come from it):

* hallucination rate and format compliance, before (v1's reviewed replies in the 30 days
  before the rollout reached 100%) and after (v2's in the 30 days from then), each with a 95%
  Wilson interval, and the change with Newcombe's interval (metrics.stats), channels as the
  unit (counts divided by the design effect of the reviewed replies' channels);
* cost: actual cost per reply before (v1) and after (v2), the increase against the guide's
  projection (~3.5x: $0.0015 -> $0.00525 a request), and the actual daily cost against the
  projected one at the same traffic;
* reaction sentiment per week and variant over the whole rollout (positive share of the
  positive and negative reactions), to read the trend;
* the decisions recorded so far (success: retire v1; partial: plan v3; failure: revert).

``record_decision`` is the service that records a decision with who and why (and an audit row).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from rollout import services
from rollout.models import AuditEntry, Rollout

from .. import selectors, stats
from ..dashboard import series
from ..reviews import services as reviews
from .models import DeploymentDecision
from .rules import Clusters
from .services import reviewed_by_channel

REVIEW_AFTER = timedelta(days=30)
BEFORE = timedelta(days=30)
NO_AFTER_PERIOD = "no after period yet: it starts when the rollout reaches Full (100%)"
# The guide's cost analysis: 500 -> 1750 input tokens at $3/M: $0.0015 -> $0.00525 per request.
PROJECTED_V1_PER_REQUEST = 0.0015
PROJECTED_V2_PER_REQUEST = 0.00525
PROJECTED_RATIO = PROJECTED_V2_PER_REQUEST / PROJECTED_V1_PER_REQUEST


def full_phase(rollout: Rollout):
    return rollout.phases.filter(percentage=100).order_by("order").first()


# The audit rows that record the rollout's state (enabled, percentage, phase) after a change.
STATE_ACTIONS = (
    AuditEntry.Action.ROLLOUT_UPDATE,
    AuditEntry.Action.KILL_SWITCH_ENGAGE,
    AuditEntry.Action.KILL_SWITCH_RELEASE,
    AuditEntry.Action.PHASE_CHANGE,
)
CLOCK_RULE = (
    "The 30 days count time actually serving v2 at 100% (Full, kill switch off, 100%): a "
    "rollback or a spell off plan stops the clock, and it starts again from zero when the "
    "rollout serves 100% again."
)


def _serving_full(state: dict, full_name: str) -> bool:
    return (
        bool(state.get("enabled"))
        and state.get("percentage") == 100
        and (state.get("phase") == full_name)
    )


def serving_state(rollout: Rollout) -> str:
    """What the rollout serves now, in words: the report's first line says it."""
    if rollout.current_phase is None:
        return "not started: every channel gets v1"
    if not rollout.enabled:
        return (
            f"kill switch on at {rollout.current_phase.name}: every channel gets "
            f"{rollout.control_variant}"
        )
    if rollout.off_plan():
        return rollout.off_plan()
    return f"{rollout.current_phase.name}, serving {rollout.percentage}%"


def full_clock(rollout: Rollout) -> tuple[datetime | None, dict[str, Any] | None]:
    """(since when the rollout has served 100% without a break, the last break before that).

    The start is the oldest audit row of the current uninterrupted run of rows whose recorded
    state serves 100% at Full (None if the rollout does not serve 100% now); the break is the
    row just before the run (a kill switch, an off-plan percentage) when the rollout had served
    100% before it, else None (the phases on the way to Full interrupt nothing).
    Without audit rows (a rollout set up by hand) the phase's start stands in."""
    full = full_phase(rollout)
    if (
        full is None
        or rollout.current_phase_id != full.pk
        or not rollout.enabled
        or rollout.percentage != 100
    ):
        return None, None
    since = None
    broken = None
    rows = AuditEntry.objects.filter(rollout=rollout, action__in=STATE_ACTIONS).order_by(
        "-created_at", "-id"
    )
    entries = rows.iterator()
    for entry in entries:
        if _serving_full(entry.after, full.name):
            since = entry.created_at
            continue
        broken = {
            "at": entry.created_at.isoformat(),
            "state": (
                "kill switch on"
                if not entry.after.get("enabled")
                else f"{entry.after.get('phase')} at {entry.after.get('percentage')}%"
            ),
            "action": entry.get_action_display(),
        }
        break
    # Only an interruption of an earlier time at 100% restarts the clock; the phases before
    # the first move to Full are just the way there.
    if broken is not None and not any(_serving_full(e.after, full.name) for e in entries):
        broken = None
    return since or rollout.phase_started_at, broken


def reached_full_at(rollout: Rollout) -> datetime | None:
    """Since when the rollout has served 100% without a break (None if it does not now)."""
    return full_clock(rollout)[0]


def _rate(k: int, n: int, clusters: Clusters | None = None) -> tuple[dict[str, Any], float]:
    """A rate with its Wilson interval, channels as the unit: the counts are divided by the
    design effect of the reviewed replies' channels (metrics.stats.design_effect). Returns the
    figures shown and the exact design effect (shown rounded; the change is computed from the
    exact one)."""
    if not n:
        return {"k": k, "n": n, "rate": None, "ci": None}, 1.0
    deff = stats.design_effect(k, n, clusters)
    lo, hi = stats.wilson(k / deff, n / deff)
    return {
        "k": k,
        "n": n,
        "rate": round(k / n, 4),
        "ci": [round(lo, 4), round(hi, 4)],
        "channels": clusters.channels if clusters is not None else None,
        "design_effect": round(deff, 3),
    }, deff


def _change(
    before: tuple[dict[str, Any], float], after: tuple[dict[str, Any], float]
) -> dict[str, Any] | None:
    """The change in points with Newcombe's interval on the design-effect-adjusted counts
    (each period's channels taken as independent of the other's: cautious, since the same
    channels in both periods would make the difference less variable)."""
    (b, db), (a, da) = before, after
    if not b["n"] or not a["n"]:
        return None
    _d, lo, hi = stats.newcombe_difference(a["k"] / da, a["n"] / da, b["k"] / db, b["n"] / db)
    d = a["k"] / a["n"] - b["k"] / b["n"]
    return {"points": round(d, 4), "ci": [round(lo, 4), round(hi, 4)]}


def _review_figures(
    rollout: Rollout, variants: list[str], since: datetime, until: datetime
) -> dict:
    graded = halluc = fmt_ok = fmt_n = 0
    for row in reviews.weekly_review_rates(rollout.key, since, until):
        if row["variant"] in variants:
            graded += row["graded"]
            halluc += row["hallucinations"]
            fmt_ok += row["format_followed"]
            fmt_n += row["format_applicable"]
    by_channel = reviewed_by_channel(rollout.key, since, until)
    channels = [f for v in variants for f in by_channel.get(v, {}).values()]
    return {
        "hallucination": _rate(
            halluc, graded, Clusters.of((f["hallucinations"], f["graded"]) for f in channels)
        ),
        "format": _rate(
            fmt_ok,
            fmt_n,
            Clusters.of((f["format_followed"], f["format_applicable"]) for f in channels),
        ),
    }


def _cost(
    rollout: Rollout, variants: list[str], since: datetime, until: datetime, now: datetime
) -> dict:
    """Cost per reply of ``variants`` in [since, until), and the daily figures over the days
    with data (the dashboard's cost.json rule, ``series.day_coverage``: from the first hour
    with replies to the end of the last, cut at now; days without a reply count nothing), so a
    few minutes of traffic are not stretched over a whole period nor scaled up from an hour.
    The daily figures count every reply of the period (all variants): ``daily_usd`` is
    ``replies_per_day`` times ``all_per_reply_usd``, the figures the card multiplies."""
    replies = cost = 0.0
    all_replies = 0
    all_cost = 0.0
    hours = set()
    for row in selectors.hourly(rollout.key, since, until):
        if row["responses"]:
            hours.add(row["hour"])
        all_replies += row["responses"]
        all_cost += row["cost_usd"]
        if row["variant"] in variants:
            replies += row["responses"]
            cost += row["cost_usd"]
    coverage = series.day_coverage(hours, since, until, now)
    days = sum(coverage.values(), timedelta(0)) / timedelta(days=1)
    return {
        "replies": int(replies),
        "cost_usd": round(cost, 4),
        "per_reply_usd": round(cost / replies, 6) if replies else None,
        "all_replies": all_replies,
        "all_cost_usd": round(all_cost, 4),
        "all_per_reply_usd": round(all_cost / all_replies, 6) if all_replies else None,
        "days_with_data": round(days, 4),
        "replies_per_day": round(all_replies / days, 1) if days else None,
        "daily_usd": round(all_cost / days, 2) if days else None,
    }


def sentiment_trend(rollout: Rollout, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per ISO week (Monday) and variant: positive, negative reactions and the positive share."""
    weeks: dict[tuple, dict[str, int]] = defaultdict(
        lambda: {"positive": 0, "negative": 0, "replies": 0}
    )
    for row in selectors.hourly(rollout.key, since, until):
        monday = (row["hour"] - timedelta(days=row["hour"].weekday())).date()
        w = weeks[(monday, row["variant"])]
        w["positive"] += row["reactions_positive"]
        w["negative"] += row["reactions_negative"]
        w["replies"] += row["responses"]
    out = []
    for (monday, variant), w in sorted(weeks.items()):
        rated = w["positive"] + w["negative"]
        out.append(
            {
                "week": monday.isoformat(),
                "variant": variant,
                **w,
                "positive_share": round(w["positive"] / rated, 4) if rated else None,
            }
        )
    return out


def build(rollout: Rollout, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    full_at, broken = full_clock(rollout)
    treatments = [rollout.treatment_variant, rollout.simplified_variant]
    control = [rollout.control_variant]
    first = (
        AuditEntry.objects.filter(rollout=rollout, action=AuditEntry.Action.PHASE_CHANGE)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    report: dict[str, Any] = {
        "rollout": rollout.key,
        "name": rollout.name,
        "generated_at": now.isoformat(),
        "phase": rollout.current_phase.name if rollout.current_phase else None,
        "percentage": rollout.percentage,
        "enabled": rollout.enabled,
        "state": serving_state(rollout),
        "clock_rule": CLOCK_RULE,
        "clock_restarted_after": broken,
        "clock_stopped": False,
        "full_since": full_at.isoformat() if full_at else None,
        "due_at": (full_at + REVIEW_AFTER).isoformat() if full_at else None,
        "ready": bool(full_at and now >= full_at + REVIEW_AFTER),
        "days_at_full": round((now - full_at).total_seconds() / 86400, 1) if full_at else 0,
    }
    if full_at is None:
        full = full_phase(rollout)
        at_full = full is not None and rollout.current_phase_id == full.pk
        report["clock_stopped"] = at_full
        report["note"] = (
            f"The rollout is at {full.name} but does not serve 100% now: the 30-day clock is "
            "stopped, and starts again from zero when the rollout serves 100% again."
            if at_full and full is not None
            else "The rollout is not at 100%; the review is due 30 days after it gets there."
        )
        anchor = now
    else:
        anchor = full_at
    before = (anchor - BEFORE, anchor)
    # Before 100% there is no "after" period at all (None; its figures are empty), not a range
    # of no length.
    after = (anchor, min(now, anchor + REVIEW_AFTER)) if full_at else (anchor, anchor)
    report["periods"] = {
        "before": [before[0].isoformat(), before[1].isoformat()],
        "after": [after[0].isoformat(), after[1].isoformat()] if full_at else None,
    }
    # Before: v1 (the bot as it was) in the 30 days before 100%; after: v2 at 100%.
    rb = _review_figures(rollout, control, *before)
    ra = _review_figures(rollout, treatments, *after)
    report["hallucination"] = {
        "before": rb["hallucination"][0],
        "after": ra["hallucination"][0],
        "change": _change(rb["hallucination"], ra["hallucination"]),
    }
    report["format_compliance"] = {
        "before": rb["format"][0],
        "after": ra["format"][0],
        "change": _change(rb["format"], ra["format"]),
    }
    cb = _cost(rollout, control, *before, now)
    ca = _cost(rollout, treatments, *after, now)
    ratio = (
        round(ca["per_reply_usd"] / cb["per_reply_usd"], 2)
        if ca["per_reply_usd"] and cb["per_reply_usd"]
        else None
    )
    report["cost"] = {
        "before": cb,
        "after": ca,
        "increase_ratio": ratio,
        "projected_ratio": round(PROJECTED_RATIO, 2),
        "projected_daily_usd": (
            round(ca["replies_per_day"] * PROJECTED_V2_PER_REQUEST, 2)
            if ca["replies_per_day"] is not None
            else None
        ),
        "vs_projection": round(ratio / PROJECTED_RATIO - 1, 4) if ratio else None,
    }
    report["sentiment"] = sentiment_trend(rollout, first or before[0], now)
    report["decisions"] = [
        {
            "decision": d.decision,
            "label": d.get_decision_display(),
            "reason": d.reason,
            "decided_by": d.decided_by,
            "decided_at": d.decided_at.isoformat(),
        }
        for d in DeploymentDecision.objects.filter(rollout=rollout)
    ]
    return report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _usd(value: float | None, places: int = 2) -> str:
    """'$0.00525', or 'no data' when there were no replies to measure (never a made-up $0)."""
    return "no data" if value is None else f"${value:.{places}f}"


def _daily(cost: dict) -> str:
    """'$25.91/day (3200 replies/day x $0.00810, over 2.5 days with data)' or 'no data'."""
    if cost["daily_usd"] is None:
        return "no data"
    return (
        f"${cost['daily_usd']:.2f}/day ({cost['replies_per_day']:.0f} replies/day x "
        f"${cost['all_per_reply_usd']:.5f}, over {cost['days_with_data']:.2f} days with data)"
    )


def _ci(fig: dict) -> str:
    return (
        f" (95% CI {_pct(fig['ci'][0])}-{_pct(fig['ci'][1])}, n={fig['n']})"
        if fig["ci"]
        else " (no reviews)"
    )


def markdown(report: dict[str, Any]) -> str:
    """The downloadable report, in Markdown."""
    h, f, c = report["hallucination"], report["format_compliance"], report["cost"]
    lines = [
        f"# Post-deployment review: {report['name']} ({report['rollout']})",
        "",
        f"Generated {report['generated_at']}. Now: {report['state']}"
        + (
            f"; serving 100% since {report['full_since']} ({report['days_at_full']} days)."
            if report["full_since"]
            else f". {report['note']}"
        )
        + (
            f" The clock restarted after: {report['clock_restarted_after']['state']} "
            f"({report['clock_restarted_after']['action']}, "
            f"{report['clock_restarted_after']['at']})."
            if report["full_since"] and report["clock_restarted_after"]
            else ""
        )
        + f" {report['clock_rule']}",
        f"Before: {report['periods']['before'][0]} to {report['periods']['before'][1]} (v1). "
        + (
            f"After: {report['periods']['after'][0]} to {report['periods']['after'][1]} (v2)."
            if report["periods"]["after"]
            else "After (v2): no after period now: it starts when the rollout serves 100% again."
            if report["clock_stopped"]
            else f"After (v2): {NO_AFTER_PERIOD}."
        ),
        "",
        "## Quantitative analysis",
        "",
        "| Figure | Before (v1) | After (v2) | Change |",
        "|---|---|---|---|",
    ]
    for label, fig in (("Hallucination rate", h), ("Format compliance", f)):
        change = fig["change"]
        ch = (
            f"{change['points'] * 100:+.1f} pts "
            f"({change['ci'][0] * 100:+.1f} to {change['ci'][1] * 100:+.1f})"
            if change
            else "-"
        )
        lines.append(
            f"| {label} | {_pct(fig['before']['rate'])}{_ci(fig['before'])} | "
            f"{_pct(fig['after']['rate'])}{_ci(fig['after'])} | {ch} |"
        )
    per_b, per_a = c["before"]["per_reply_usd"], c["after"]["per_reply_usd"]
    lines += [
        f"| Cost per reply | {_usd(per_b, 5)} | {_usd(per_a, 5)} | "
        f"{c['increase_ratio'] or '-'}x (projected {c['projected_ratio']}x) |",
        f"| Daily cost (all replies, over the days with data) | "
        f"{_daily(c['before'])} | {_daily(c['after'])} | "
        + (
            f"projected ${c['projected_daily_usd']:.2f}/day "
            f"at {c['after']['replies_per_day']:.0f} replies/day |"
            if c["projected_daily_usd"] is not None
            else "- |"
        ),
        "",
        "## Reaction sentiment by week (positive share of rated replies)",
        "",
        "| Week | Variant | Positive | Negative | Positive share |",
        "|---|---|---|---|---|",
    ]
    for w in report["sentiment"]:
        lines.append(
            f"| {w['week']} | {w['variant']} | {w['positive']} | {w['negative']} "
            f"| {_pct(w['positive_share'])} |"
        )
    lines += ["", "## Decision", ""]
    if report["decisions"]:
        for d in report["decisions"]:
            lines.append(
                f"- {d['decided_at']}: **{d['label']}** by {d['decided_by']}: {d['reason']}"
            )
    else:
        lines.append("No decision recorded yet.")
    return "\n".join(lines) + "\n"


def decision_not_yet(report: dict[str, Any]) -> str:
    """Why the decision cannot be recorded yet, and when it can (the guide: after 30 days at
    100%, so the figures cover a whole month of v2 for everyone)."""
    if report.get("clock_stopped"):
        return f"The decision is recorded after 30 days at 100%. {report['note']}"
    if not report["full_since"]:
        return (
            "The decision is recorded after 30 days at 100%: the rollout is not at 100% yet, "
            "so the form opens 30 days after it reaches Full."
        )
    return (
        f"The decision is recorded after 30 days at 100%: the rollout has been at 100% for "
        f"{report['days_at_full']:g} days, so the form opens on {report['due_at'][:10]} at "
        f"{report['due_at'][11:16]} UTC."
    )


@transaction.atomic
def record_decision(
    rollout: Rollout,
    *,
    decision: str,
    actor: services.Actor,
    reason: str,
    now: datetime | None = None,
) -> DeploymentDecision:
    """Record the review's decision with who and why, the report's figures, and an audit row."""
    if decision not in DeploymentDecision.Decision.values:
        raise services.InvalidChange(
            f"decision must be one of {', '.join(DeploymentDecision.Decision.values)}; "
            f"{decision!r} is not."
        )
    reason = (reason or "").strip()
    if not reason:
        raise services.InvalidChange("Give a reason for the decision; it is kept with the report.")
    now = now or timezone.now()
    snapshot = build(rollout, now)
    if not snapshot["ready"]:
        raise services.InvalidChange(decision_not_yet(snapshot))
    made = DeploymentDecision.objects.create(
        rollout=rollout,
        decision=decision,
        reason=reason[:4000],
        decided_by=actor.name,
        decided_at=now,
        report=snapshot,
    )
    services.record_audit(
        rollout,
        AuditEntry.Action.DEPLOYMENT_DECISION,
        actor,
        reason[:2000],
        {},
        {"decision": decision, "label": made.get_decision_display()},
    )
    return made


def trend_chart(
    report: dict[str, Any], control: str, width: int = 640, height: int = 200
) -> dict[str, Any]:
    """SVG coordinates of the weekly positive share: control vs v2 (its variants together)."""
    weeks = sorted({w["week"] for w in report["sentiment"]})
    if not weeks:
        return {"weeks": [], "series": []}
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for w in report["sentiment"]:
        arm = "v1" if w["variant"] == control else "v2"
        sums[(arm, w["week"])][0] += w["positive"]
        sums[(arm, w["week"])][1] += w["positive"] + w["negative"]
    left, right, top, bottom = 40, 10, 10, 30
    span_x = max(1, len(weeks) - 1)

    def xy(i: int, share: float) -> tuple[float, float]:
        x = left + (width - left - right) * (i / span_x if len(weeks) > 1 else 0.5)
        y = top + (height - top - bottom) * (1 - share)
        return round(x, 1), round(y, 1)

    series = []
    for arm in ("v1", "v2"):
        points = []
        for i, week in enumerate(weeks):
            pos, rated = sums.get((arm, week), [0, 0])
            if rated:
                points.append((*xy(i, pos / rated), round(pos / rated * 100), week))
        series.append(
            {
                "arm": arm,
                "points": points,
                "polyline": " ".join(f"{x},{y}" for x, y, _, _ in points),
            }
        )
    ticks = [{"y": xy(0, v / 100)[1], "label": f"{v}%"} for v in (0, 25, 50, 75, 100)]
    labels = [{"x": xy(i, 0)[0], "label": week[5:]} for i, week in enumerate(weeks)]
    return {
        "weeks": weeks,
        "series": series,
        "ticks": ticks,
        "labels": labels,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "bottom": height - bottom,
    }
