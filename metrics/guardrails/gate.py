"""The success criteria of a rollout's current phase, read from the database now, and the phase
gate built on them.

``metrics.guardrails.criteria`` says, without the database, whether a criterion holds for given
figures; this module reads the figures (``metrics.guardrails.services``: the rules' states, their
evidence windows, the arms) for the console's criteria panel (``context``) and for the gate that
metrics' AppConfig registers with ``rollout.gates`` (``gate_problems``). Kept apart from both so
that services may use the pure criteria (a warning within noise reads "ok") while this reads
services, and no two modules import each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from . import rules as g
from . import services as gs
from .criteria import FAILS, Criterion, assess, is_criterion


def for_rollout(
    rollout, *, now: datetime | None = None, rows: list | None = None
) -> list[Criterion]:
    """The current phase's criteria: one per enabled guardrail that applies in it, over the
    guardrail's own evidence window (``guardrail_services.window_start``). ``rows``: the rules
    with their states when the caller has them (``guardrail_services.states``).

    Asked for "now", the answer is kept on the rollout instance for its revision, so a page
    that shows the criteria and the phase gate (both read them) computes them once."""
    if now is not None:
        return _for_rollout(rollout, now=now, rows=rows)
    cached = getattr(rollout, "_criteria_now", None)
    if cached is not None and cached[0] == rollout.revision:
        return cached[1]
    found = _for_rollout(rollout, now=timezone.now(), rows=rows)
    rollout._criteria_now = (rollout.revision, found)
    return found


def _for_rollout(rollout, *, now: datetime, rows: list | None) -> list[Criterion]:
    phase = rollout.current_phase
    if phase is None:
        return []
    now = now or timezone.now()
    out = []
    memo: dict = {}
    rows = gs.states(rollout) if rows is None else rows
    released = gs.last_release(rollout) if any(r.applies_in(phase) for r, _ in rows) else None
    for rule, state in rows:
        if not rule.applies_in(phase) or not is_criterion(rule.metric):
            continue
        start = gs.window_start(rollout, rule, released=released)
        if start is None:
            continue
        since = max(start, now - gs.COST_WINDOW) if rule.metric == g.DAILY_COST else start
        reviews = rule.metric == g.HALLUCINATIONS
        if (since, reviews) not in memo:
            memo[(since, reviews)] = gs.arms(rollout, since, now, reviews=reviews)
        breached = ""
        if state is not None and state.breached_at is not None and state.window_start == start:
            breached = state.summary
        out.append(
            assess(
                rule.key,
                rule.spec(),
                memo[(since, reviews)],
                control=rollout.control_variant,
                treatments=gs.treatments_of(rollout),
                window_hours=(now - since).total_seconds() / 3600,
                breached=breached,
                since=since,
                traffic=gs.daily_traffic(rollout, now) if rule.metric == g.DAILY_COST else None,
            )
        )
    return out


def gate_problems(rollout, target, now: datetime | None = None) -> list[str]:
    """A problem per criterion of the current phase that does not hold, when ``target`` is a
    step forward (the gate ``rollout.services.phase_gate_problems`` collects)."""
    current = rollout.current_phase
    if current is None or target.order <= current.order:
        return []
    return [
        f"Success criterion {c.key} {'fails' if c.status == FAILS else 'is not yet known'} "
        f"({c.question}): {c.why}."
        for c in for_rollout(rollout, now=now)
        if not c.holds
    ]


def context(rollout, *, now: datetime | None = None, rows: list | None = None) -> dict[str, Any]:
    """Template context of ``metrics/partials/criteria.html``. ``criteria_last_phase``: the
    current phase is the last one, so there is no advance for the criteria to gate (at Full they
    say whether v2 holds up at 100%; the post-deployment review decides whether it stays)."""
    found = for_rollout(rollout, now=now, rows=rows)
    return {
        "criteria": found,
        "criteria_unmet": sum(1 for c in found if not c.holds),
        "criteria_last_phase": rollout.current_phase is not None and rollout.next_phase() is None,
    }
