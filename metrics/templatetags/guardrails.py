"""Template helpers for guardrails: the status panel the console includes, and short figures.

``{% load guardrails %}{% guardrail_status rollout %}`` renders every rule's state with the
numbers behind it, the success criteria for advancing (metrics.guardrails.criteria)
and the latest alerts, without the console's views needing anything more in their context.
"""

from __future__ import annotations

from django import template

from selcontrol import heartbeat

from ..guardrails import gate
from ..guardrails import rules as g
from ..guardrails import services as guardrail_services

register = template.Library()

PILL = {g.OK: "ok", g.INSUFFICIENT: "muted", g.WARNING: "warn", g.BREACHED: "bad", g.OFF: "muted"}


@register.inclusion_tag("metrics/partials/guardrail_status.html", takes_context=True)
def guardrail_status(context, rollout) -> dict:
    rows = guardrail_services.states(rollout)
    phase = rollout.current_phase
    applying = [r for r, _ in rows if r.applies_in(phase)]
    # A state belongs to the evidence window it was evaluated over. After a phase change (advance,
    # step back, a rollback and re-enable, a reset) the rule's window starts again: until the next
    # evaluation its state is the previous window's, shown as such, never as the current one.
    released = guardrail_services.last_release(rollout) if applying else None
    active, previous = [], []
    for r, s in rows:
        if s is None or s.status == g.OFF:
            continue
        start = guardrail_services.window_start(rollout, r, released=released)
        if r.applies_in(phase) and start is not None and s.window_start == start:
            active.append((r, s))
        else:
            previous.append((r, s))
    window_began = min(
        (
            start
            for r in applying
            if (start := guardrail_services.window_start(rollout, r, released=released))
        ),
        default=None,
    )
    return {
        "rollout": rollout,
        "rows": rows,
        "active": active,
        "previous": previous,
        "window_began": window_began,
        "applying": applying,
        "counts": {
            status: sum(1 for _, s in active if s.status == status)
            for status in (g.BREACHED, g.WARNING, g.INSUFFICIENT, g.OK)
        },
        **gate.context(rollout, rows=rows),
        "alerts": guardrail_services.recent_alerts(rollout, 3),
        "stopped": stopped_processes(),
        "request": context.get("request"),
        "is_operator": context.get("is_operator"),
        "csrf_token": context.get("csrf_token"),
        "evaluated_at": max((s.evaluated_at for _, s in active if s.evaluated_at), default=None),
        "previous_evaluated_at": max(
            (s.evaluated_at for _, s in previous if s.evaluated_at), default=None
        ),
    }


def stopped_processes() -> list[heartbeat.Heartbeat]:
    """The worker or beat when its heartbeat is stale: guardrails are then not evaluated, so no
    automatic rollback and no alert (selcontrol/heartbeat.py)."""
    if not heartbeat.watched():
        return []
    return [beat for beat in heartbeat.status().values() if beat.stale]


@register.filter
def guardrail_pill(status: str) -> str:
    return PILL.get(status, "muted")


@register.filter
def guardrail_label(status: str) -> str:
    return g.STATUS_LABELS.get(status, status)


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


@register.filter
def guardrail_short(state) -> str:
    """The numbers behind a state in a few words, e.g. 'v2_full 4.1% vs v1 1.2% · p=0.003'."""
    if state is None:
        return "not evaluated yet"
    n = state.numbers or {}
    metric = n.get("metric")
    if state.status in (g.OFF,) or not metric:
        return state.summary
    if metric == g.DAILY_COST:
        if "projected_daily_usd" not in n:
            return state.summary
        return f"${n['projected_daily_usd']:,.2f}/day at 100% v2 vs budget ${n['budget_usd']:,.2f}"
    if state.status == g.INSUFFICIENT:
        return state.summary
    p = n.get("p_value")
    tail = f" · p={p:.2g}" if p is not None else ""
    if n.get("within_tolerance"):  # above the line, but a regression is ruled out: noise
        tail += " · within noise (its criterion holds)"
    if metric == g.CRASH:
        if not n.get("replies"):  # no v2 reply to rate: the summary says since when
            return state.summary
        return (
            f"v2 {_pct(n.get('rate_treatment'))} errors over its last {n['replies']:,} replies "
            f"vs {_pct(n.get('p0'))}{tail}"
        )
    if metric == g.LATENCY_P95:
        return (
            f"p95 {n['treatment']} {n['p95_treatment_ms']:,.0f} ms vs {n['control']} "
            f"{n['p95_control_ms']:,.0f} ms (limit {n['factor']:g}x){tail}"
        )
    return (
        f"{n['treatment']} {_pct(n.get('rate_treatment'))} vs {n['control']} "
        f"{_pct(n.get('rate_control'))} (n={n['n_treatment']:,}/{n['n_control']:,}){tail}"
    )


@register.filter
def report_pct(value) -> str:
    """0.1234 -> '12.3%'; None -> '–'."""
    return "–" if value is None else f"{value * 100:.1f}%"


@register.filter
def report_points(value) -> str:
    """A difference of proportions in percentage points: 0.021 -> '+2.1 pts'."""
    return "–" if value is None else f"{value * 100:+.1f} pts"
