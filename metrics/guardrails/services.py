"""Guardrail evaluation against the rollups, the actions on a breach, and the phase gate.

``evaluate_rollout`` runs every minute (Celery beat, ``metrics.tasks.evaluate_guardrails``; or
``manage.py evaluate_guardrails``). For each rule it reads the figures per variant over the
rule's *evidence window* (``window_start``: the latest of the phase's start, the last release of
the kill switch, and the rule's last edit; nothing from before counts), evaluates it with
``metrics.guardrails.rules`` and stores the state. A breach is sticky for the window (the test is
always valid: once it rejects, it stays rejected). On the first breach in a window the rule's
action runs through ``rollout.services`` (kill switch, or back one phase; the first phase has no
phase before it, so stepping back from it engages the kill switch) with the actor
``guardrail:<key>`` and the numbers as the reason, an Alert row is written in the same
transaction, and its webhook delivery is queued after the commit. Each rule is one transaction
holding its state row's lock, so overlapping runs cannot act twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from rollout import services
from rollout.models import AuditEntry, Phase, Rollout

from .. import histogram, rollups, selectors
from ..models import ResponseEvent
from ..reviews.models import ReviewGrade
from . import alerts
from . import rules as g
from .models import Alert, AlertSettings, GuardrailRule, GuardrailState, GuardrailTransition
from .webhooks import check_url, mask_url

logger = logging.getLogger("selcontrol.guardrails")

COST_WINDOW = timedelta(hours=24)

DEFAULT_RULES = [
    # (key, metric, threshold, min_samples, from phase order, action, note): the guide's triggers
    (
        "errors",
        g.ERROR_RATE,
        0.0,
        200,
        1,
        GuardrailRule.Action.KILL_SWITCH,
        "Alpha: any crashes or errors. Emergency rollback.",
    ),
    (
        "crash",
        g.CRASH,
        0.10,
        2,
        1,
        GuardrailRule.Action.KILL_SWITCH,
        "Alpha and every later phase: any crashes. v2's error rate over its first replies "
        "and its last hour of replies against 10% (or v1's rate then). Emergency rollback.",
    ),
    (
        "complaints",
        g.NEGATIVE_REACTIONS,
        0.10,
        200,
        2,
        GuardrailRule.Action.ROLLBACK_PHASE,
        "Beta: user complaints increase >10%.",
    ),
    (
        "corrections",
        g.CORRECTIONS,
        0.10,
        200,
        2,
        GuardrailRule.Action.ROLLBACK_PHASE,
        "Beta: no increase in correction rate.",
    ),
    (
        "hallucinations",
        g.HALLUCINATIONS,
        0.0,
        30,
        2,
        GuardrailRule.Action.ROLLBACK_PHASE,
        "Beta: hallucination rate same or lower (from human reviews).",
    ),
    (
        "latency",
        g.LATENCY_P95,
        1.5,
        200,
        3,
        GuardrailRule.Action.ROLLBACK_PHASE,
        "Canary: no latency degradation (p95 within 1.5x of v1).",
    ),
    (
        "cost",
        g.DAILY_COST,
        75.0,
        200,
        3,
        GuardrailRule.Action.ALERT,
        "Canary: cost unsustainable (the guide projects $52.50/day at 10,000 requests/day).",
    ),
]


def preload_rules(rollout: Rollout, *, actor: services.Actor) -> list[GuardrailRule]:
    """Create the guide's rules for a rollout (those it does not have yet)."""
    created = []
    for key, metric, threshold, min_samples, order, action, note in DEFAULT_RULES:
        rule, made = GuardrailRule.objects.get_or_create(
            rollout=rollout,
            key=key,
            defaults={
                "metric": metric,
                "threshold": threshold,
                "min_samples": min_samples,
                "from_phase": rollout.phases.filter(order=order).first(),
                "action": action,
                "note": note,
                "updated_by": actor.name,
            },
        )
        if made:
            created.append(rule)
    return created


@dataclass
class Outcome:
    rule: str
    status: str
    summary: str
    changed: bool
    action: str = ""


_LAST_RELEASE = "_last_release"  # the Rollout instance's attribute last_release is kept in


def last_release(rollout: Rollout) -> datetime | None:
    """When the kill switch was last released (None: never). Read once per instance and
    revision (a release bumps it): the console's guardrail rows and criteria both ask."""
    cached: tuple[int, datetime | None] | None = getattr(rollout, _LAST_RELEASE, None)
    if cached is not None and cached[0] == rollout.revision:
        return cached[1]
    found = (
        AuditEntry.objects.filter(rollout=rollout, action=AuditEntry.Action.KILL_SWITCH_RELEASE)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    setattr(rollout, _LAST_RELEASE, (rollout.revision, found))  # ours: the model declares none
    return found


def window_start(
    rollout: Rollout, rule: GuardrailRule, *, released: datetime | None | Literal[False] = False
) -> datetime | None:
    """Where the rule's evidence starts (None: the rollout has not started). ``released``: the
    last kill-switch release when the caller has it already (``False``: look it up)."""
    if rollout.phase_started_at is None:
        return None
    starts = [rollout.phase_started_at]
    if released is False:
        released = last_release(rollout)
    if released:
        starts.append(released)
    if rule.reset_at:
        starts.append(rule.reset_at)
    return max(starts)


RATE_FIELDS = ("errors", "reactions_negative", "corrections")


def channel_clusters(
    rollout: Rollout, since: datetime, until: datetime
) -> dict[str, tuple[dict[str, g.Clusters], list[dict]]]:
    """Per variant: the rates' Clusters (channels as the unit) and one latency histogram per
    channel, from the per-channel rollups over [since, until)."""
    out = {}
    totals = rollups.channel_totals(rollout.key, since, until, latency=True)
    for variant, channels in totals.items():
        rows = [f for f in channels.values() if f["responses"] > 0]
        clusters = {
            name: g.Clusters.of((f[name], f["responses"]) for f in rows) for name in RATE_FIELDS
        }
        out[variant] = (clusters, [f["latency_hist"] for f in rows])
    return out


def reviewed_by_channel(
    rollout_key: str, since: datetime, until: datetime
) -> dict[str, dict[str, dict[str, int]]]:
    """{variant: {channel: {graded, hallucinations, format_applicable, format_followed}}} over
    the reviewed replies sent in [since, until), each by its first saved grade (as
    metrics.reviews.services counts them): the per-channel totals of the review rates."""
    rows = (
        ReviewGrade.objects.filter(
            submitted_at__isnull=False,
            item__response__rollout_key=rollout_key,
            item__response__ts__gte=since,
            item__response__ts__lt=until,
        )
        .order_by("item_id", "submitted_at", "id")
        .values_list(
            "item_id", "hallucination", "format", "item__response__variant",
            "item__response__channel_id",
        )
    )  # fmt: skip
    seen: set[int] = set()
    out: dict[str, dict[str, dict[str, int]]] = {}
    for item_id, hallucination, fmt, variant, channel in rows:
        if item_id in seen:
            continue
        seen.add(item_id)
        f = out.setdefault(variant, {}).setdefault(
            channel,
            {"graded": 0, "hallucinations": 0, "format_applicable": 0, "format_followed": 0},
        )
        f["graded"] += 1
        f["hallucinations"] += hallucination in ("minor", "major")
        f["format_applicable"] += fmt != "na"
        f["format_followed"] += fmt == "followed"
    return out


def daily_traffic(rollout: Rollout, now: datetime) -> g.Traffic:
    """Every variant's replies and spend over the last COST_WINDOW, whatever the phase's window:
    traffic does not depend on which version answers, and the window can be minutes old (the
    demo's burst of 1,500 replies in the 5 minutes after a re-enable read as 2.3 million replies a
    day, a $19,964/day cost breach on a bot answering 3,000 a day). A bot younger than the window
    counts the hours since its first reply (``resp_rollout_ts`` answers both questions)."""
    since = now - COST_WINDOW
    rows = selectors.hourly(rollout.key, since, now)
    if not rows:
        return g.Traffic(0, 0.0, 0.0)
    replies = ResponseEvent.objects.filter(rollout_key=rollout.key).order_by("ts")
    if not replies.filter(ts__lt=since).exists():
        first = replies.filter(ts__gte=since, ts__lt=now).values_list("ts", flat=True).first()
        since = first or since
    return g.Traffic(
        replies=sum(row["responses"] for row in rows),
        cost_usd=sum(row["cost_usd"] for row in rows),
        hours=(now - since).total_seconds() / 3600,
    )


def arms(
    rollout: Rollout, since: datetime, until: datetime, *, reviews: bool = False
) -> dict[str, g.Arm]:
    """Figures per variant over [since, until) from the rollups (and reviews when asked), with
    the per-channel totals the rules' variance needs (channels are the unit of assignment)."""
    totals: dict[str, dict[str, Any]] = {}
    for row in selectors.hourly(rollout.key, since, until):
        t = totals.setdefault(
            row["variant"],
            {
                "responses": 0,
                "errors": 0,
                "reactions_negative": 0,
                "corrections": 0,
                "cost_usd": 0.0,
                "hists": [],
            },
        )
        for name in ("responses", "errors", "reactions_negative", "corrections"):
            t[name] += row[name]
        t["cost_usd"] += row["cost_usd"]
        t["hists"].append(row["latency_hist"])
    review = selectors.review_counts(rollout.key, since, until) if reviews else {}
    by_channel = channel_clusters(rollout, since, until)
    reviewed = reviewed_by_channel(rollout.key, since, until) if reviews else {}
    out = {}
    for variant in set(totals) | set(review):
        t = totals.get(variant, {"hists": []})
        r = review.get(variant, {})
        clusters, channel_latency = by_channel.get(variant, ({}, []))
        if reviews:
            graded = reviewed.get(variant, {}).values()
            clusters = {
                **clusters,
                "hallucinations": g.Clusters.of((f["hallucinations"], f["graded"]) for f in graded),
            }
        out[variant] = g.Arm(
            variant=variant,
            responses=t.get("responses", 0),
            errors=t.get("errors", 0),
            reactions_negative=t.get("reactions_negative", 0),
            corrections=t.get("corrections", 0),
            cost_usd=float(t.get("cost_usd", 0.0)),
            latency_hist=histogram.merge(t["hists"]),
            graded=int(r.get("graded", 0)),
            hallucinations=int(r.get("hallucinations", 0)),
            clusters=clusters,
            channel_latency=tuple(channel_latency),
        )
    return out


def recent_replies(
    rollout: Rollout, since: datetime, until: datetime
) -> tuple[list[tuple[str, bool]], tuple[int, int]]:
    """The crash guard's data over [since, until): v2's replies (every treatment variant) as
    (channel, is_error) oldest first, and v1's (errors, replies). Raw rows: an hour holds a few
    hundred to a few thousand replies, read by the (rollout_key, ts) index."""
    treatments = treatments_of(rollout)
    rows = (
        ResponseEvent.objects.filter(rollout_key=rollout.key, ts__gte=since, ts__lt=until)
        .order_by("ts", "id")
        .values_list("variant", "channel_id", "error")
    )
    recent, x1, n1 = [], 0, 0
    for variant, channel, error in rows:
        if variant in treatments:
            recent.append((channel, error is not None))
        elif variant == rollout.control_variant:
            n1 += 1
            x1 += error is not None
    return recent, (x1, n1)


def first_replies(
    rollout: Rollout, since: datetime, until: datetime, limit: int = g.CRASH_ONSET_REPLIES
) -> list[tuple[str, bool]]:
    """The crash guard's onset data: v2's first ``limit`` replies (every treatment variant) in
    [since, until) as (channel, is_error), oldest first (the (rollout_key, ts) index)."""
    rows = (
        ResponseEvent.objects.filter(
            rollout_key=rollout.key,
            variant__in=treatments_of(rollout),
            ts__gte=since,
            ts__lt=until,
        )
        .order_by("ts", "id")
        .values_list("channel_id", "error")[:limit]
    )
    return [(channel, error is not None) for channel, error in rows]


def treatments_of(rollout: Rollout) -> list[str]:
    return [
        v
        for v in (rollout.treatment_variant, rollout.simplified_variant)
        if v and v != rollout.control_variant
    ]


def _verdict(
    rollout: Rollout,
    rule: GuardrailRule,
    start: datetime,
    now: datetime,
    state: GuardrailState,
    memo: dict | None = None,
) -> g.Verdict:
    spec = rule.spec()
    if rule.metric == g.CRASH:
        since = max(start, now - timedelta(minutes=g.CRASH_LOOKBACK_MINUTES))
        recent, control = recent_replies(rollout, since, now)
        return g.evaluate_crash(
            spec,
            recent,
            control,
            first=first_replies(rollout, start, now),
            lookback_minutes=round((now - since).total_seconds() / 60, 1),
            control_variant=rollout.control_variant,
            window_start=start,
        )
    since = max(start, now - COST_WINDOW) if rule.metric == g.DAILY_COST else start
    reviews = rule.metric == g.HALLUCINATIONS
    key = (rollout.pk, rollout.revision, since, now, reviews)
    if memo is not None and key in memo:
        figures = memo[key]
    else:
        figures = arms(rollout, since, now, reviews=reviews)
        if memo is not None:
            memo[key] = figures
    hours = (now - since).total_seconds() / 3600
    verdict = g.evaluate(
        spec,
        figures,
        control=rollout.control_variant,
        treatments=treatments_of(rollout),
        window_hours=hours,
        p_min=state.p_min,
        window_start=start,
        traffic=daily_traffic(rollout, now) if rule.metric == g.DAILY_COST else None,
    )
    return _noise_is_not_a_warning(rule, spec, verdict, figures, rollout, hours)


def _noise_is_not_a_warning(
    rule: GuardrailRule,
    spec: g.RuleSpec,
    verdict: g.Verdict,
    figures: dict,
    rollout: Rollout,
    hours: float,
) -> g.Verdict:
    """A comparison's estimate above the rule's line that is not significant is a warning only
    while a regression is not ruled out either: when the rule's success criterion holds (the
    always-valid upper bound of the excess is below the criterion's tolerance,
    ``metrics.guardrails.criteria``), the difference is noise and the rule reads "ok", saying so.
    Without this, "errors: warning, v2 1.3% vs v1 1.2%, p=1" sat beside "errors: holds"."""
    from . import criteria

    if verdict.status != g.WARNING or rule.metric not in criteria.TOLERANCE:
        return verdict
    judged = criteria.assess(
        rule.key,
        spec,
        figures,
        control=rollout.control_variant,
        treatments=treatments_of(rollout),
        window_hours=hours,
    )
    if not judged.holds:
        return verdict
    summary = verdict.summary.replace(", not yet significant", ", not significant")
    return g.Verdict(
        g.OK,
        f"{summary}; within noise: {judged.why}",
        {**verdict.numbers, "within_tolerance": True, "tolerance": judged.numbers.get("tolerance")},
        verdict.variant,
    )


def _previous_phase(rollout: Rollout) -> Phase | None:
    if rollout.current_phase is None:
        return None
    return rollout.phases.filter(order__lt=rollout.current_phase.order).order_by("-order").first()


def _act(rule: GuardrailRule, verdict: g.Verdict, now: datetime) -> str:
    """Run the rule's action through rollout.services; returns what was done, in words."""
    if rule.action == GuardrailRule.Action.ALERT:
        return "alert only"
    rollout = Rollout.objects.select_related("current_phase").get(pk=rule.rollout_id)
    if not rollout.enabled:
        return "none: the kill switch was already on"
    actor = services.Actor(f"guardrail:{rule.key}", via="system")
    reason = f"guardrail {rule.key} ({rule.describe()}): {verdict.summary}"[:2000]
    previous = _previous_phase(rollout)
    try:
        if rule.action == GuardrailRule.Action.KILL_SWITCH or previous is None:
            services.engage_kill_switch(rollout, actor=actor, reason=reason)
            why = "" if rule.action == GuardrailRule.Action.KILL_SWITCH else " (no earlier phase)"
            return f"kill switch engaged{why}: every channel gets {rollout.control_variant}"
        current = rollout.current_phase
        # _previous_phase finds a phase only below the current one.
        assert current is not None
        services.move_to_phase(rollout, phase=previous, actor=actor, reason=reason, now=now)
        return f"stepped back from {current.name} to {previous.name} ({previous.percentage}%)"
    except services.ServiceError as exc:
        logger.error("guardrail %s could not roll back %s: %s", rule.key, rollout.key, exc)
        return f"rollback failed: {exc}"


def _record(state: GuardrailState, status: str, summary: str, numbers: dict, now: datetime) -> bool:
    changed = state.status != status
    if changed:
        GuardrailTransition.objects.create(
            rule_id=state.rule_id,
            status_from=state.status,
            status_to=status,
            summary=summary,
            numbers=numbers,
            at=now,
        )
    state.status, state.summary, state.numbers, state.evaluated_at = status, summary, numbers, now
    return changed


def evaluate_rule(
    rule_id: int, *, now: datetime | None = None, memo: dict | None = None
) -> Outcome:
    """Evaluate one rule now, act on a first breach, store the state (one transaction)."""
    now = now or timezone.now()
    GuardrailState.objects.get_or_create(rule_id=rule_id)
    with transaction.atomic():
        state = (
            GuardrailState.objects.select_for_update().select_related("rule").get(rule_id=rule_id)
        )
        rule = state.rule
        rollout = Rollout.objects.select_related("current_phase").get(pk=rule.rollout_id)
        phase = rollout.current_phase
        start = window_start(rollout, rule)
        if start is None or not rule.applies_in(phase):
            if not rule.enabled:
                why = "Disabled."
            elif phase is None:
                why = "The rollout has not started."
            else:
                # The rule does not apply in this phase: start is None only before the first
                # phase (move_to_phase sets current_phase and phase_started_at together, and
                # nothing clears them), and an enabled rule applies in every phase without a
                # from_phase (GuardrailRule.applies_in).
                assert rule.from_phase is not None
                why = f"Watched from {rule.from_phase.name} on; the rollout is in {phase.name}."
            changed = _record(state, g.OFF, why, {}, now)
            state.save()
            return Outcome(rule.key, g.OFF, why, changed)
        if state.window_start != start:
            state.window_start, state.p_min = start, {}
            state.breached_at, state.acted_at, state.action_taken = None, None, ""
        if state.breached_at is not None:  # sticky for the window: the test has rejected
            state.evaluated_at = now
            state.save(update_fields=["evaluated_at"])
            return Outcome(rule.key, g.BREACHED, state.summary, False, state.action_taken)
        verdict = _verdict(rollout, rule, start, now, state, memo)
        state.p_min = g.running_p_values(verdict, state.p_min)
        numbers = {
            **verdict.numbers,
            "window_start": start.isoformat(),
            "evaluated_at": now.isoformat(),
        }
        changed = _record(state, verdict.status, verdict.summary, numbers, now)
        action = ""
        if verdict.status == g.BREACHED:
            state.breached_at = now
            action = _act(rule, verdict, now)
            state.acted_at, state.action_taken = now, action[:300]
            alert = Alert.objects.create(
                rollout=rollout,
                rule=rule,
                title=f"{rollout.name}: guardrail {rule.key} breached",
                message=f"{rule.describe()}.\n{verdict.summary}",
                numbers=numbers,
                action_taken=action[:300],
                created_at=now,
            )
            alerts.queue_delivery(alert)
            logger.warning(
                "guardrail %s of %s breached: %s; action: %s",
                rule.key,
                rollout.key,
                verdict.summary,
                action,
            )
        state.save()
        return Outcome(rule.key, verdict.status, verdict.summary, changed, action)


def evaluate_rollout(rollout: Rollout, *, now: datetime | None = None) -> list[Outcome]:
    """Evaluate every rule of a rollout, in order (a rollback by one resets the others' window).
    Rules with the same window share one read of the figures (keyed by the rollout's revision,
    so a rollback by an earlier rule makes the later ones read afresh)."""
    now = now or timezone.now()
    memo: dict = {}
    return [
        evaluate_rule(rule_id, now=now, memo=memo)
        for rule_id in GuardrailRule.objects.filter(rollout=rollout)
        .order_by("id")
        .values_list("id", flat=True)
    ]


def evaluate_all(*, now: datetime | None = None) -> dict[str, list[Outcome]]:
    now = now or timezone.now()
    return {
        rollout.key: evaluate_rollout(rollout, now=now)
        for rollout in Rollout.objects.filter(guardrail_rules__isnull=False).distinct()
    }


def evaluate_on_demand(rollout: Rollout, *, actor: services.Actor) -> list[Outcome]:
    """The console's "Evaluate now": bring the rollups up to date, evaluate every rule of the
    rollout, and audit who asked when any rule's state changed (a breach's rollback is audited
    by its own service, as the guardrail ``guardrail:<key>``)."""
    from .. import rollups

    rollups.catch_up(time_budget=20.0)
    before = {r.key: (s.status if s else g.OFF) for r, s in states(rollout)}
    outcomes = evaluate_rollout(rollout)
    after = {o.rule: o.status for o in outcomes}
    if after != before:
        with transaction.atomic():  # the row alone: each rule's state committed as it was saved
            services.record_audit(
                rollout,
                AuditEntry.Action.GUARDRAIL_EVALUATE,
                actor,
                "evaluated now from the console: "
                + ", ".join(
                    f"{k} {before.get(k, g.OFF)} -> {v}"
                    for k, v in after.items()
                    if before.get(k) != v
                ),
                before,
                after,
                revision=Rollout.objects.values_list("revision", flat=True).get(pk=rollout.pk),
            )
    return outcomes


def states(rollout: Rollout) -> list[tuple[GuardrailRule, GuardrailState | None]]:
    """Rules with their last state, for the console and the rules page."""
    rules = list(
        GuardrailRule.objects.filter(rollout=rollout)
        .select_related("from_phase", "state")
        .order_by("id")
    )
    return [(r, getattr(r, "state", None)) for r in rules]


def rule_bounds(rollout: Rollout, *, now: datetime | None = None) -> dict[str, list[g.Bound]]:
    """Per rule key: the always-valid (cluster-robust) confidence interval of each treatment
    variant's difference over the rule's evidence window, and whether its floors are met
    (``metrics.guardrails.rules.always_valid_bounds``); [] for rules that are not comparisons (cost,
    the crash guard) or not watched now. For the console's success criteria."""
    now = now or timezone.now()
    memo: dict = {}
    out: dict[str, list[g.Bound]] = {}
    for rule in GuardrailRule.objects.filter(rollout=rollout).select_related("from_phase"):
        start = window_start(rollout, rule)
        if start is None or not rule.applies_in(rollout.current_phase) or rule.metric not in g.TAU:
            out[rule.key] = []
            continue
        reviews = rule.metric == g.HALLUCINATIONS
        key = (start, reviews)
        if key not in memo:
            memo[key] = arms(rollout, start, now, reviews=reviews)
        out[rule.key] = g.always_valid_bounds(
            rule.spec(),
            memo[key],
            control=rollout.control_variant,
            treatments=treatments_of(rollout),
        )
    return out


def recent_alerts(rollout: Rollout, limit: int = 5) -> list[Alert]:
    return list(Alert.objects.filter(rollout=rollout).select_related("rule")[:limit])


@transaction.atomic
def update_rule(
    rule: GuardrailRule, *, actor: services.Actor, reason: str = "", **changes: Any
) -> GuardrailRule:
    """Change a rule; its evidence window restarts (earlier looks were for another question).
    Audited in the same transaction (``guardrail.update``, every field asked for before and
    after); asking for what the rule already is changes nothing and writes no row."""
    locked = GuardrailRule.objects.select_for_update().get(pk=rule.pk)
    fields = list(changes)
    before = {k: _plain(getattr(locked, k)) for k in fields}
    changes = {k: v for k, v in changes.items() if getattr(locked, k) != v}
    if not changes:
        return locked
    for name, value in changes.items():
        setattr(locked, name, value)
    now = timezone.now()
    locked.reset_at, locked.updated_by, locked.updated_at = now, actor.name, now
    locked.full_clean()
    locked.save()
    after = {k: _plain(getattr(locked, k)) for k in fields}
    if after != before:
        services.record_audit(
            locked.rollout,
            AuditEntry.Action.GUARDRAIL_UPDATE,
            actor,
            reason or f"guardrail {locked.key} changed: {locked.describe()}",
            {"rule": locked.key, **before},
            {"rule": locked.key, **after},
        )
    return locked


def _plain(value: Any) -> Any:
    """A field's value as the audit row keeps it (a phase by its name)."""
    return (
        getattr(value, "name", value)
        if value is not None and not isinstance(value, (int, float, str, bool))
        else value
    )


@transaction.atomic
def reset_rule(rule: GuardrailRule, *, actor: services.Actor) -> GuardrailRule:
    """Start the rule's evidence window over (e.g. after fixing the cause of a breach); audited
    as a ``guardrail.update`` of its ``reset_at`` in the same transaction."""
    locked = GuardrailRule.objects.select_for_update().get(pk=rule.pk)
    before = locked.reset_at.isoformat() if locked.reset_at else None
    now = timezone.now()
    locked.reset_at, locked.updated_by, locked.updated_at = now, actor.name, now
    locked.save(update_fields=["reset_at", "updated_by", "updated_at"])
    services.record_audit(
        locked.rollout,
        AuditEntry.Action.GUARDRAIL_UPDATE,
        actor,
        f"guardrail {locked.key}: evidence restarted from now",
        {"rule": locked.key, "reset_at": before},
        {"rule": locked.key, "reset_at": now.isoformat()},
    )
    rule.refresh_from_db()
    return rule


@transaction.atomic
def set_alert_webhook(
    rollout: Rollout, *, url: str, kind: str, actor: services.Actor, reason: str = ""
) -> AlertSettings:
    """Set where the rollout's alerts go (an empty URL: SELCONTROL_ALERT_WEBHOOK_URL). The URL
    must pass ``webhooks.check_url`` (raises ``WebhookRefused`` with a sentence: no internal
    address, Discord/Slack hosts by default); the rollout row is locked and the audit row, with
    the URL's secret token masked, is written in the same transaction. Nothing changes, no row."""
    url = url.strip()
    if url:
        check_url(url)
    locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
    config = AlertSettings.objects.filter(rollout=locked).first() or AlertSettings(rollout=locked)
    if config.pk is not None and (config.webhook_url, config.kind) == (url, kind):
        return config
    before = {"webhook_url": mask_url(config.webhook_url), "kind": config.kind} if config.pk else {}
    config.webhook_url, config.kind = url, kind
    config.updated_by, config.updated_at = actor.name, timezone.now()
    config.save()
    services.record_audit(
        locked,
        AuditEntry.Action.ALERT_WEBHOOK,
        actor,
        reason or ("alert webhook set" if url else "alert webhook cleared"),
        before,
        {"webhook_url": mask_url(url), "kind": kind},
    )
    return config
