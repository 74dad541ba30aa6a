"""The quick start watches the guardrails as production does (issue 16): the beat schedule run
in-process (metrics.scheduler, manage.py run_scheduler), "Evaluate now" in the console, and
manage.py demo_regression, whose v2 errors lead to an automatic rollback."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from metrics import (
    rollups,
    tasks,  # noqa: F401 - registers the tasks the schedule names
)
from metrics.guardrails import services as guardrail_services
from metrics.guardrails.models import GuardrailState
from metrics.management.commands.demo_regression import regression_events
from metrics.models import ResponseEvent
from metrics.scheduler import InProcessBeat
from rollout import services
from rollout.models import AuditEntry, Rollout
from selcontrol.celery import app as celery_app
from tests.conftest import SYSTEM, changed_event

KEY = "prompts_v2"


def _beta(rollout: Rollout, hours: float = 2) -> Rollout:
    return services.move_to_phase(
        rollout,
        phase=2,
        actor=SYSTEM,
        reason="beta",
        gate_override_reason="t",
        now=timezone.now() - timedelta(hours=hours),
    )


def test_beat_schedule__run_in_process__interval_entries_now_weekly_sample_waits():
    ran: list[str] = []
    beat = InProcessBeat(celery_app, run_task=ran.append)
    beat.tick()
    # the heartbeat entry (selcontrol.heartbeat) runs too: the quick start's scheduler beats
    assert sorted(ran) == [
        "metrics.tasks.evaluate_guardrails",
        "metrics.tasks.update_rollups",
        "selcontrol.heartbeat",
    ]
    ran.clear()
    beat.tick()
    assert ran == []  # nothing due again at once
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        beat.tick()
    # every 30 s; the guardrails every minute
    assert [n for n in ran if n.startswith("metrics.")] == ["metrics.tasks.update_rollups"]
    with time_machine.travel(timezone.now() + timedelta(seconds=62), tick=False):
        beat.tick()
    assert "metrics.tasks.evaluate_guardrails" in ran


def test_beat__one_task_fails__the_others_still_run_and_it_is_retried_at_its_next_tick():
    ran: list[str] = []

    def run(name: str) -> None:
        if name == "metrics.tasks.update_rollups":
            raise RuntimeError("database is locked")
        ran.append(name)

    beat = InProcessBeat(celery_app, run_task=run)
    beat.tick()
    assert sorted(ran) == ["metrics.tasks.evaluate_guardrails", "selcontrol.heartbeat"]
    failed = next(e for e in beat.entries if e.task == "metrics.tasks.update_rollups")
    assert failed.failures == 1


def test_run_scheduler_once__evaluates_the_guardrails_for_real(rollout):
    _beta(rollout)
    out = StringIO()
    call_command("run_scheduler", "--once", stdout=out)
    assert "ran metrics.tasks.evaluate_guardrails: 1 ok" in out.getvalue()
    state = GuardrailState.objects.get(rule__rollout=rollout, rule__key="errors")
    assert state.evaluated_at is not None and state.status == "insufficient"


def test_demo_regression__then_the_scheduler__kill_switch_engaged_by_the_guardrail(rollout):
    _beta(rollout)
    out = StringIO()
    call_command("demo_regression", "--replies", "3000", "--seed", "3", stdout=out)
    assert "3000 replies sent" in out.getvalue()
    InProcessBeat(celery_app).tick()  # what make run's scheduler does within a minute
    rollout.refresh_from_db()
    assert rollout.enabled is False
    entry = AuditEntry.objects.filter(action="kill_switch.engage").get()
    assert entry.actor == "guardrail:errors" and "v2_full error rate" in entry.reason


def _evaluate_in_process(rollout: Rollout) -> Rollout:
    """What the scheduler's guardrail tick does: rollups caught up, every rule evaluated."""
    rollups.catch_up()
    guardrail_services.evaluate_rollout(rollout)
    rollout.refresh_from_db()
    return rollout


def test_demo_regression__right_after_a_re_enable__errors_rule_rolls_back(rollout):
    """The README's demo after a rollback: re-enabled at 20% (the evidence window starts now),
    the default demo's replies fall inside the window and the errors rule rolls back."""
    _beta(rollout)
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="earlier rollback")
    services.release_kill_switch(rollout, actor=SYSTEM, reason="fixed", percentage=20)
    released = AuditEntry.objects.get(action="kill_switch.release").created_at
    out = StringIO()
    call_command("demo_regression", "--seed", "3", stdout=out)
    assert "1500 replies sent" in out.getvalue() and "errors rule will breach" in out.getvalue()
    assert ResponseEvent.objects.filter(ts__lt=released).count() == 0
    rollout = _evaluate_in_process(rollout)
    assert rollout.enabled is False
    entry = AuditEntry.objects.filter(action="kill_switch.engage").order_by("-created_at")[0]
    assert entry.created_at > released
    assert entry.actor == "guardrail:errors" and "v2_full error rate" in entry.reason


def test_demo_regression__right_after_moving_to_full__crash_guard_rolls_back(rollout):
    """At 100% no v1 replies to compare with: the crash guard rolls back, as the docs say."""
    services.move_to_phase(rollout, phase=4, actor=SYSTEM, reason="full", gate_override_reason="t")
    out = StringIO()
    call_command("demo_regression", "--seed", "4", stdout=out)
    assert "crash guard (no v1 at 100% to compare with)" in out.getvalue()
    rollout = _evaluate_in_process(rollout)
    assert rollout.enabled is False
    assert AuditEntry.objects.get(action="kill_switch.engage").actor == "guardrail:crash"


def test_demo_regression__events_follow_the_rule_and_v2_fails_at_the_rate(rollout):
    rollout = services.update_rollout(
        rollout, actor=SYSTEM, reason="x", enabled=True, percentage=50
    )
    events = regression_events(rollout, replies=4000, error_rate=0.3, now=timezone.now(), seed=1)
    v2 = [e for e in events if e["variant"] != "v1"]
    v1 = [e for e in events if e["variant"] == "v1"]
    assert 0.4 < len(v2) / len(events) < 0.6
    assert 0.25 < sum(1 for e in v2 if e["error"]) / len(v2) < 0.35
    assert sum(1 for e in v1 if e["error"]) / len(v1) < 0.03


def test_demo_regression__kill_switch_on__says_to_re_enable_first(rollout):
    with pytest.raises(CommandError, match="re-enable it first"):
        call_command("demo_regression")


def test_evaluate_now__operator__fresh_states_and_an_audit_row_naming_who(rollout, operator_client):
    _beta(rollout)
    response = operator_client.post(
        f"/metrics/{KEY}/guardrails/evaluate/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204 and changed_event(response)
    state = GuardrailState.objects.get(rule__rollout=rollout, rule__key="errors")
    assert state.status == "insufficient"
    entry = AuditEntry.objects.get(action="guardrail.evaluate")
    assert entry.actor == "alice" and entry.after["errors"] == "insufficient"
    assert entry.before["errors"] == "off"
    # nothing changed the second time: nothing to audit
    operator_client.post(f"/metrics/{KEY}/guardrails/evaluate/", headers={"HX-Request": "true"})
    assert AuditEntry.objects.filter(action="guardrail.evaluate").count() == 1


def test_evaluate_now__without_javascript__redirects_back_to_the_page(rollout, operator_client):
    _beta(rollout)
    response = operator_client.post(
        f"/metrics/{KEY}/guardrails/evaluate/", {"next": f"/rollouts/{KEY}/"}
    )
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{KEY}/"
    response = operator_client.post(
        f"/metrics/{KEY}/guardrails/evaluate/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/rollouts/{KEY}/"


def test_evaluate_now__viewer__403_nothing_evaluated(rollout, viewer_client):
    _beta(rollout)
    assert viewer_client.post(f"/metrics/{KEY}/guardrails/evaluate/").status_code == 403
    assert not GuardrailState.objects.filter(evaluated_at__isnull=False).exists()
