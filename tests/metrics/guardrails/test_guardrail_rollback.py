"""Guardrails end to end on the real ingest path: simulated traffic in which v2 regresses (errors,
complaints, corrections, latency, cost, hallucinations, each in turn) goes through
metrics.ingest.intake.record_events minute by minute with the clock moved by time-machine; the
evaluation that the beat runs every minute breaches the matching rule, rolls back through
rollout.services and writes the audit row with the numbers, within minutes of simulated time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metrics.guardrails import rules as g
from metrics.guardrails import services as guardrail_services
from metrics.guardrails.models import Alert, GuardrailRule, GuardrailState
from metrics.ingest.intake import record_events
from rollout import services
from rollout.models import AuditEntry, Rollout
from selcontrol_client import assignment

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
SYSTEM = services.Actor("pytest", via="system")


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.01
    negative_rate: float = 0.05
    correction_rate: float = 0.05
    latency_ms: float = 1200.0
    input_tokens: int = 500
    output_tokens: int = 200
    positive_rate: float = 0.0


V1 = Behaviour()
V2 = Behaviour(input_tokens=1750, output_tokens=240, latency_ms=1300.0)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Traffic:
    """A bot with ``per_minute`` replies a minute over ``channels`` channels; each reply's
    variant comes from the rollout's current rule (so a rollback moves traffic back to v1)."""

    def __init__(
        self,
        rollout: Rollout,
        behaviours: dict[str, Behaviour],
        *,
        seed: int = 1,
        per_minute: int = 80,
        channels: int = 400,
        text: bool = False,
    ):
        self.rollout_key = rollout.key
        self.behaviours = behaviours
        self.rng = random.Random(seed)
        self.per_minute = per_minute
        self.channels = [str(10**17 + seed * 10_000 + i) for i in range(channels)]
        self.text = text
        self.n = 0
        self.seed = seed

    def events(self, start: datetime) -> list[dict]:
        rule = Rollout.objects.get(key=self.rollout_key).to_rule(overrides=[])
        rng, out = self.rng, []
        for i in range(self.per_minute):
            self.n += 1
            ts = start + timedelta(seconds=60 * i / self.per_minute)
            channel = rng.choice(self.channels)
            variant, _ = assignment.decide(rule, channel, ts)
            b = self.behaviours[variant]
            mid = f"s{self.seed}-m{self.n}"
            reply = {
                "id": f"s{self.seed}-r{self.n}",
                "type": "response",
                "ts": _iso(ts),
                "channel_id": channel,
                "message_id": mid,
                "rollout": self.rollout_key,
                "variant": variant,
                "model": "anthropic/claude-3.5-sonnet",
                "input_tokens": b.input_tokens,
                "output_tokens": b.output_tokens,
                "latency_ms": round(b.latency_ms * rng.lognormvariate(0, 0.35), 1),
                "error": "provider_error" if rng.random() < b.error_rate else None,
            }
            if self.text:
                reply["user_text"], reply["response_text"] = (
                    "How does DNS work?",
                    f"Answer {self.n}",
                )
            out.append(reply)
            later = _iso(ts + timedelta(seconds=20))
            if rng.random() < b.negative_rate:
                out.append(
                    {
                        "id": f"s{self.seed}-x{self.n}",
                        "type": "reaction",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": mid,
                        "emoji": "👎",
                        "action": "add",
                        "user_id": "u1",
                    }
                )
            if rng.random() < b.positive_rate:
                out.append(
                    {
                        "id": f"s{self.seed}-p{self.n}",
                        "type": "reaction",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": mid,
                        "emoji": "👍",
                        "action": "add",
                        "user_id": "u2",
                    }
                )
            if rng.random() < b.correction_rate:
                out.append(
                    {
                        "id": f"s{self.seed}-f{self.n}",
                        "type": "followup",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": f"s{self.seed}-u{self.n}",
                        "reply_to": mid,
                        "text": "that's wrong",
                        "is_correction": True,
                    }
                )
        return out


def start_phase(rollout: Rollout, order: int, at: datetime = T0) -> Rollout:
    with time_machine.travel(at, tick=False):
        return services.move_to_phase(
            rollout,
            phase=order,
            actor=SYSTEM,
            reason="test start",
            gate_override_reason="test",
            now=at,
        )


def run(
    traffic: Traffic,
    rollout: Rollout,
    *,
    minutes: int,
    start: datetime = T0,
    stop_on_breach: bool = True,
) -> tuple[int | None, list]:
    """Drive ``minutes`` of traffic, evaluating after each; returns (minute of the first breach,
    its outcomes)."""
    for minute in range(minutes):
        begin = start + timedelta(minutes=minute)
        now = begin + timedelta(minutes=1)
        with time_machine.travel(now, tick=False):
            result = record_events(traffic.events(begin), now=now)
            assert not result.rejected, result.rejected[:3]
            outcomes = guardrail_services.evaluate_rollout(rollout, now=now)
        breached = [o for o in outcomes if o.status == g.BREACHED]
        if breached and stop_on_breach:
            return minute + 1, outcomes
    return None, outcomes


def state(rollout: Rollout, key: str) -> GuardrailState:
    return GuardrailState.objects.get(rule__rollout=rollout, rule__key=key)


@pytest.fixture
def canary(rollout) -> Rollout:
    """prompts_v2 in Canary (50%), where every preloaded rule is watched. The simulated bot sends
    80 replies a minute (115,200 a day): normal v2 ($0.00885 a reply) would cost ~$1,020/day at
    100%, so the cost budget is $1,500 here (the preloaded $75 suits the guide's 10,000/day)."""
    GuardrailRule.objects.filter(rollout=rollout, key="cost").update(threshold=1500.0)
    return start_phase(rollout, 3)


def test_preloaded_rules__are_the_guides_triggers(rollout):
    keys = list(
        GuardrailRule.objects.filter(rollout=rollout)
        .order_by("id")
        .values_list("key", "metric", "action")
    )
    assert keys == [
        ("errors", g.ERROR_RATE, "kill_switch"),
        ("complaints", g.NEGATIVE_REACTIONS, "rollback_phase"),
        ("corrections", g.CORRECTIONS, "rollback_phase"),
        ("hallucinations", g.HALLUCINATIONS, "rollback_phase"),
        ("latency", g.LATENCY_P95, "rollback_phase"),
        ("cost", g.DAILY_COST, "alert"),
        ("crash", g.CRASH, "kill_switch"),
    ]


def test_errors__v2_error_rate_up__kill_switch_within_minutes(canary):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, error_rate=0.08)})
    minute, outcomes = run(traffic, canary, minutes=30)
    assert minute is not None and minute <= 20
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["errors"]
    canary.refresh_from_db()
    assert canary.enabled is False
    entry = AuditEntry.objects.filter(
        rollout=canary, action=AuditEntry.Action.KILL_SWITCH_ENGAGE
    ).get()
    assert entry.actor == "guardrail:errors" and entry.via == "system"
    assert "v2_full error rate" in entry.reason and "always-valid p=" in entry.reason


def test_complaints__negative_reactions_up__steps_back_to_beta(canary):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, negative_rate=0.15)})
    minute, outcomes = run(traffic, canary, minutes=40)
    assert minute is not None and minute <= 30
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["complaints"]
    canary.refresh_from_db()
    assert canary.enabled and canary.current_phase.name == "Beta" and canary.percentage == 20
    entry = AuditEntry.objects.filter(rollout=canary, action=AuditEntry.Action.PHASE_CHANGE).first()
    assert entry.actor == "guardrail:complaints"
    assert "negative-reaction rate" in entry.reason


def test_corrections__correction_rate_up__steps_back_to_beta(canary):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, correction_rate=0.15)})
    minute, outcomes = run(traffic, canary, minutes=40)
    assert minute is not None and minute <= 30
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["corrections"]
    canary.refresh_from_db()
    assert canary.current_phase.name == "Beta"
    assert AuditEntry.objects.filter(rollout=canary, actor="guardrail:corrections").exists()


def test_latency__v2_p95_doubles__steps_back_to_beta(canary):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, latency_ms=3000.0)})
    minute, outcomes = run(traffic, canary, minutes=30)
    assert minute is not None and minute <= 20
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["latency"]
    canary.refresh_from_db()
    assert canary.current_phase.name == "Beta"
    entry = AuditEntry.objects.filter(rollout=canary, actor="guardrail:latency").get()
    assert "p95" in entry.reason and "limit 1.5x" in entry.reason


def test_cost__tokens_jump__breaches_budget_and_steps_back(canary):
    GuardrailRule.objects.filter(rollout=canary, key="cost").update(action="rollback_phase")
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, input_tokens=6000)})
    minute, outcomes = run(traffic, canary, minutes=20)
    assert minute is not None and minute <= 10
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["cost"]
    assert state(canary, "cost").numbers["projected_daily_usd"] > 1500
    canary.refresh_from_db()
    assert canary.current_phase.name == "Beta"


def test_cost__default_alert_only_rule__alerts_without_rollback(
    canary, django_capture_on_commit_callbacks
):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, input_tokens=6000)})
    with django_capture_on_commit_callbacks(execute=True):
        minute, _ = run(traffic, canary, minutes=20)
    assert minute is not None
    canary.refresh_from_db()
    assert canary.enabled and canary.current_phase.name == "Canary"
    alert = Alert.objects.get(rollout=canary, rule__key="cost")
    assert alert.action_taken == "alert only"
    assert alert.delivery == Alert.Delivery.NOT_CONFIGURED


def test_breach__is_acted_on_once_per_window(canary):
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, error_rate=0.10)})
    minute, _ = run(traffic, canary, minutes=30)
    assert minute is not None
    run(traffic, canary, minutes=3, start=T0 + timedelta(minutes=minute), stop_on_breach=False)
    assert AuditEntry.objects.filter(rollout=canary, actor="guardrail:errors").count() == 1
    assert Alert.objects.filter(rollout=canary, rule__key="errors").count() == 1
    assert state(canary, "errors").status == g.BREACHED


def test_alpha_phase__step_back_rule__engages_kill_switch(rollout):
    alpha = start_phase(rollout, 1)
    GuardrailRule.objects.filter(rollout=alpha, key="errors").update(action="rollback_phase")
    traffic = Traffic(alpha, {"v1": V1, "v2_full": replace(V2, error_rate=0.15)}, per_minute=400)
    minute, _ = run(traffic, alpha, minutes=30)
    assert minute is not None
    alpha.refresh_from_db()
    assert alpha.enabled is False
    assert "no earlier phase" in state(alpha, "errors").action_taken


def test_rule_not_watched_in_this_phase__is_off(rollout):
    alpha = start_phase(rollout, 1)
    outcome = guardrail_services.evaluate_rule(
        GuardrailRule.objects.get(rollout=alpha, key="latency").pk, now=T0 + timedelta(minutes=1)
    )
    assert outcome.status == g.OFF
    assert "Watched from Canary on" in outcome.summary


def test_aa__identical_variants_over_a_compressed_phase__no_rule_breaches(canary):
    """A/A end to end, a few runs: v1 and v2 behave the same (the full false-alarm rate over
    many runs is measured in bench/guardrails_aa.py)."""
    same = {"v1": V1, "v2_full": V1, "v2_simplified": V1}
    GuardrailRule.objects.filter(rollout=canary, key="cost").update(enabled=False)
    for seed in (11, 12):
        traffic = Traffic(canary, same, seed=seed, per_minute=120)
        start = T0 + timedelta(hours=seed)
        with time_machine.travel(start, tick=False):
            services.move_to_phase(canary, phase=2, actor=SYSTEM, reason="reset window")
            services.move_to_phase(
                canary, phase=3, actor=SYSTEM, reason="a/a run", gate_override_reason="test"
            )
        minute, outcomes = run(traffic, canary, minutes=30, start=start)
        assert minute is None, [o for o in outcomes if o.status == g.BREACHED]
        assert {o.rule: o.status for o in outcomes}["errors"] in (g.OK, g.WARNING)


def test_cost__burst_right_after_a_phase_change__scales_the_days_traffic_not_the_burst(rollout):
    # A day of ordinary traffic (100 replies an hour), then Canary starts and the next five
    # minutes bring 1,500 replies (what `manage.py demo_regression` sends). Scaling the window's
    # five minutes to a day read 432,000 replies a day: a $3,800/day breach of the $75 budget
    # on a bot answering under 4,000 a day (the walk of 2026-11-30 saw "$19,964.29/day").
    from metrics.guardrails import gate

    day_start = T0 - timedelta(days=1)
    start_phase(rollout, 2, at=day_start - timedelta(hours=1))
    background = Traffic(rollout, {"v1": V1, "v2_full": V2}, per_minute=100, seed=7)
    for hour in range(24):
        at = day_start + timedelta(hours=hour)
        with time_machine.travel(at + timedelta(minutes=2), tick=False):
            assert not record_events(background.events(at), now=at + timedelta(minutes=2)).rejected
    canary = start_phase(rollout, 3, at=T0)
    burst = Traffic(canary, {"v1": V1, "v2_full": V2}, per_minute=300, seed=8)
    run(burst, canary, minutes=5, stop_on_breach=False)
    now = T0 + timedelta(minutes=5)

    cost = state(canary, "cost")
    assert cost.status != g.BREACHED
    # the last 24 h: hours 1-23 of the day (hour 0's replies fell before now - 24 h) + the burst
    assert cost.numbers["all_replies"] == pytest.approx(cost.numbers["v2_replies"] * 2, rel=0.2)
    assert cost.numbers["replies_per_day"] == pytest.approx(23 * 100 + 1500, rel=0.001)
    per_reply = cost.numbers["cost_per_v2_reply_usd"]
    assert cost.numbers["projected_daily_usd"] == pytest.approx(per_reply * 3800, abs=0.01)
    canary.refresh_from_db()
    assert canary.enabled and canary.current_phase.name == "Canary"
    with time_machine.travel(now, tick=False):
        (criterion,) = [c for c in gate.for_rollout(canary, now=now) if c.key == "cost"]
    assert criterion.holds, criterion.why
    assert "3,800 replies/day" in criterion.why
