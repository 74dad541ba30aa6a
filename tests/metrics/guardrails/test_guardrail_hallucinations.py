"""The hallucination guardrail reads human reviews: replies go through the real ingest path, a
review sample is drawn (metrics.reviews.services), reviewers grade a few replies a minute, and the
rule breaches and steps back once v2's hallucination rate is shown to be above v1's."""

from __future__ import annotations

import random
from datetime import date, timedelta

import time_machine

from metrics.guardrails import rules as g
from metrics.guardrails import services as guardrail_services
from metrics.guardrails.models import GuardrailRule, GuardrailState
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewItem
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

GRADE = {
    "format": "followed",
    "uncertainty": "appropriate",
    "consistent": "yes",
    "sounds_like_sel": "4",
}


def test_hallucinations__v2_worse_in_reviews__steps_back_to_beta(rollout, bob):
    GuardrailRule.objects.filter(rollout=rollout, key="cost").update(threshold=1500.0)  # 43k/day
    canary = start_phase(rollout, 3)
    traffic = Traffic(canary, {"v1": V1, "v2_full": V2}, per_minute=30, text=True)
    minute, _ = run(traffic, canary, minutes=20)
    assert minute is None  # replies alone: nothing breaches
    now = T0 + timedelta(minutes=21)
    with time_machine.travel(now, tick=False):
        sample = reviews.draw_sample(
            rollout_key=canary.key, week_start=date(2026, 3, 2), actor=SYSTEM, size=240, now=now
        )
    items = ReviewItem.objects.filter(sample=sample).count()
    rng = random.Random(5)
    breached_at = None
    for _step in range(0, items, 12):  # reviewers grade 12 replies a minute, from the queue
        now += timedelta(minutes=1)
        with time_machine.travel(now, tick=False):
            for _ in range(12):
                item = reviews.next_item(sample, bob, now=now)
                if item is None:
                    break
                rate = 0.40 if item.response.variant == "v2_full" else 0.05
                bad = rng.random() < rate
                data = {
                    **GRADE,
                    "hallucination": "major" if bad else "none",
                    "hallucination_note": "made up a flag" if bad else "",
                }
                reviews.submit_grade(item, bob, data, now=now)
            outcomes = guardrail_services.evaluate_rollout(canary, now=now)
        if any(o.status == g.BREACHED for o in outcomes):
            breached_at = now
            break
    assert breached_at is not None and breached_at - T0 <= timedelta(minutes=45)
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["hallucinations"]
    state = GuardrailState.objects.get(rule__rollout=canary, rule__key="hallucinations")
    assert state.numbers["n_treatment"] >= 30 and state.numbers["rate_treatment"] > 0.2
    canary.refresh_from_db()
    assert canary.current_phase.name == "Beta"
    entry = AuditEntry.objects.get(rollout=canary, actor="guardrail:hallucinations")
    assert "hallucination rate" in entry.reason and "reviews" in entry.reason


def test_hallucinations__too_few_reviews__not_enough_data(rollout):
    canary = start_phase(rollout, 3)
    traffic = Traffic(canary, {"v1": V1, "v2_full": V2}, per_minute=30, text=True)
    run(traffic, canary, minutes=2)
    state = GuardrailState.objects.get(rule__rollout=canary, rule__key="hallucinations")
    assert state.status == g.INSUFFICIENT
    assert "reviews" in state.summary
