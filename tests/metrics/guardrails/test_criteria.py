"""Success criteria (metrics.guardrails.criteria): "holds" needs the data floor and an
always-valid upper bound of the regression below the tolerance; a healthy v2 reaches it with
enough data, a regressed v2 fails, and the phase gate (console and services) refuses to advance
on a criterion that does not hold unless an override reason is given, which the audit row keeps."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import timedelta

import pytest
import time_machine

from metrics.guardrails import criteria, gate
from metrics.guardrails import rules as g
from metrics.guardrails.models import GuardrailRule
from rollout import checklist, services
from rollout.models import AuditEntry
from tests.metrics.guardrails.test_guardrail_rollback import (
    SYSTEM,
    T0,
    V1,
    V2,
    Traffic,
    run,
    start_phase,
)

ERRORS = g.RuleSpec(g.ERROR_RATE, threshold=0.0, min_samples=200)
COMPLAINTS = g.RuleSpec(g.NEGATIVE_REACTIONS, threshold=0.10, min_samples=200)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p)


def _arms(rng: random.Random, n1: int, p1: float, n2: int, p2: float) -> dict[str, g.Arm]:
    return {
        "v1": g.Arm("v1", responses=n1, errors=_binomial(rng, n1, p1)),
        "v2_full": g.Arm("v2_full", responses=n2, errors=_binomial(rng, n2, p2)),
    }


def _assess(spec: g.RuleSpec, arms: dict[str, g.Arm]) -> criteria.Criterion:
    return criteria.assess(
        spec.metric, spec, arms, control="v1", treatments=["v2_full"], window_hours=72
    )


def test_always_valid_bound__equal_rates_looked_at_20_times__covers_zero_at_every_look():
    rng = random.Random(11)
    covered = 0
    for _ in range(200):
        x1 = x2 = n = 0
        ok = True
        for _look in range(20):
            x1 += _binomial(rng, 250, 0.05)
            x2 += _binomial(rng, 250, 0.05)
            n += 250
            bound = g.always_valid_bound(x1, n, x2, n, tau=0.02, alpha=0.05)
            ok = ok and bound.lower <= 0 <= bound.upper
        covered += ok
    assert covered >= 190  # at least 1 - alpha of the paths, however often looked at


def test_always_valid_bound__no_data__is_the_whole_line():
    bound = g.always_valid_bound(0, 0, 3, 10)
    assert bound.lower == -math.inf and bound.upper == math.inf


def test_criterion__no_v2_data_in_the_window__says_when_the_window_began():
    """After a rollback and release the window starts again: the page's "no data" must say
    since when, or it contradicts the last-24-h table that shows v2's replies."""
    from datetime import UTC, datetime

    arms = {"v1": g.Arm("v1", responses=500, errors=5)}
    found = criteria.assess(
        "errors",
        ERRORS,
        arms,
        control="v1",
        treatments=["v2_full", "v2_simplified"],
        window_hours=0.1,
        since=datetime(2026, 11, 29, 21, 33, 57, tzinfo=UTC),
    )
    assert found.status == criteria.UNKNOWN
    assert found.why == (
        "no data from v2_full or v2_simplified yet (this window began Nov 29, 21:33 UTC)"
    )


def test_criterion__healthy_v2_with_enough_data__holds_in_nearly_every_simulated_rollout():
    rng = random.Random(16)
    outcomes = [
        _assess(ERRORS, _arms(rng, 15_000, 0.012, 15_000, 0.012)).status for _ in range(100)
    ]
    assert outcomes.count(criteria.HOLDS) >= 95, outcomes


def test_criterion__healthy_v2_at_beta_size__holds_far_more_often_than_half():
    # three days of Beta at the demo's traffic: about 10,000 v1 and 2,600 v2 replies
    rng = random.Random(5)
    outcomes = [_assess(ERRORS, _arms(rng, 10_000, 0.012, 2_600, 0.012)).status for _ in range(100)]
    assert outcomes.count(criteria.HOLDS) >= 70
    assert criteria.FAILS not in outcomes  # noise is never a failed criterion


def test_criterion__v2_three_points_worse__fails_and_never_holds():
    rng = random.Random(7)
    outcomes = [_assess(ERRORS, _arms(rng, 15_000, 0.012, 15_000, 0.052)).status for _ in range(20)]
    assert set(outcomes) == {criteria.FAILS}


def test_criterion__below_the_data_floor__not_yet_known_saying_how_many():
    arms = {
        "v1": g.Arm("v1", responses=5_000, errors=60),
        "v2_full": g.Arm("v2_full", responses=80),
    }
    c = _assess(ERRORS, arms)
    assert c.status == criteria.UNKNOWN
    assert "below the data floor: 80 of 200 replies per variant" in c.why


def test_criterion__interval_straddles_the_tolerance__not_yet_known_with_more_needed():
    arms = {
        "v1": g.Arm("v1", responses=1_000, errors=12),
        "v2_full": g.Arm("v2_full", responses=300, errors=5),
    }
    c = _assess(ERRORS, arms)
    assert c.status == criteria.UNKNOWN
    assert "not ruled out yet" in c.why and "more replies per variant" in c.why
    assert c.numbers["upper"] > criteria.TOLERANCE[g.ERROR_RATE] > c.numbers["lower"]


def test_criterion__relative_margin_rule__healthy_reactions_hold():
    rng = random.Random(3)
    n = 8_000
    arms = {
        "v1": g.Arm("v1", responses=n, reactions_negative=_binomial(rng, n, 0.05)),
        "v2_full": g.Arm("v2_full", responses=n, reactions_negative=_binomial(rng, n, 0.05)),
    }
    c = _assess(COMPLAINTS, arms)
    assert c.status == criteria.HOLDS, c.why
    assert c.question == "negative-reaction rate of v2 at most 1.1 x v1's + 1 pts"


def test_criterion__guardrail_breached_in_the_window__fails_whatever_the_figures():
    arms = {
        "v1": g.Arm("v1", responses=9_000, errors=90),
        "v2_full": g.Arm("v2_full", responses=9_000),
    }
    c = criteria.assess(
        "errors",
        ERRORS,
        arms,
        control="v1",
        treatments=["v2_full"],
        window_hours=5,
        breached="v2_full error rate 30% vs v1 1%",
    )
    assert c.status == criteria.FAILS and "breached in this window" in c.why


# --- against the database: the gate -------------------------------------------------------------


def _tick_all(rollout, phase):
    for key in checklist.ITEM_KEYS:
        services.tick_checklist_item(rollout, phase, key, actor=SYSTEM, checked=True)


@pytest.fixture
def beta_thin(rollout):
    """Beta, its watch passed and its checklist ticked, with few replies: criteria not known."""
    beta = start_phase(rollout, 2, at=T0)
    _tick_all(beta, beta.current_phase)
    return beta


def test_gate__criteria_not_known__advance_refused_naming_each_criterion(beta_thin):
    later = T0 + timedelta(days=8)
    with time_machine.travel(later, tick=False):
        problems = services.phase_gate_problems(beta_thin, beta_thin.next_phase())
        assert problems and all(p.startswith("Success criterion") for p in problems)
        assert any("errors is not yet known" in p for p in problems)
        with pytest.raises(services.GateNotMet):
            services.move_to_phase(beta_thin, phase=3, actor=SYSTEM, reason="beta done")


def test_gate__override_reason__advances_and_audit_keeps_the_criteria(beta_thin):
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        moved = services.move_to_phase(
            beta_thin,
            phase=3,
            actor=SYSTEM,
            reason="beta done",
            gate_override_reason="reviews too few this week; accepted by the team",
        )
    assert moved.current_phase.name == "Canary"
    entry = AuditEntry.objects.filter(action="phase.change").first()
    assert "gate override: reviews too few" in entry.reason
    assert "Success criterion errors is not yet known" in entry.reason


def test_gate__console_advance_without_override__409_showing_the_criteria(
    beta_thin, operator_client
):
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        response = operator_client.post(
            f"/rollouts/{beta_thin.key}/phase/",
            {"revision": beta_thin.revision, "phase": 3, "reason": "beta done"},
            HTTP_HX_REQUEST="true",
        )
    body = response.content.decode()
    assert response.status_code == 409
    assert "Success criterion errors is not yet known" in body
    beta_thin.refresh_from_db()
    assert beta_thin.current_phase.name == "Beta"


def test_gate__healthy_v2_through_the_ingest_path__criteria_hold_and_advance_needs_no_override(
    rollout,
):
    canary = start_phase(rollout, 3)
    # the cost budget and reviews are other questions; this one is about rates and latency
    GuardrailRule.objects.filter(rollout=canary, key__in=["cost", "hallucinations"]).update(
        enabled=False
    )
    healthy = replace(V2, latency_ms=V1.latency_ms)
    traffic = Traffic(canary, {"v1": V1, "v2_full": healthy}, per_minute=1_000, channels=2_000)
    run(traffic, canary, minutes=24)
    _tick_all(canary, canary.current_phase)
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        rows = gate.for_rollout(canary)
        assert {c.key: c.status for c in rows} == {
            "errors": "holds",
            "complaints": "holds",
            "corrections": "holds",
            "latency": "holds",
        }, [c.why for c in rows]
        moved = services.move_to_phase(canary, phase=4, actor=SYSTEM, reason="canary done")
    assert moved.current_phase.name == "Full"
