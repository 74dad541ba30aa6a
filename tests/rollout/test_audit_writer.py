"""One audit writer (issue 17, item 3): every state-changing service, of rollout and of metrics,
writes exactly one audit row through ``rollout.services.record_audit``, inside its own
transaction; a service that refuses the change writes none, and a service whose audit row cannot
be written changes nothing."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone

from metrics.guardrails import deployment_report
from metrics.guardrails import services as guardrail_services
from metrics.guardrails.models import AlertSettings, DeploymentDecision, GuardrailRule
from metrics.guardrails.webhooks import WebhookRefused
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewSample
from rollout import services
from rollout.models import (
    ApiToken,
    AuditEntry,
    ChannelOverride,
    ChecklistTick,
    Phase,
    Rollout,
)
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db

CHANNEL = "123456789012345678"
WEBHOOK = "http://127.0.0.1:9/api/webhooks/1/token"
REFUSALS = (
    services.ServiceError,
    reviews.ReviewError,
    ValidationError,
    WebhookRefused,
    ObjectDoesNotExist,
)


@dataclass
class Case:
    """``setup`` (may audit: not counted) returns what ``change`` and ``refused`` take."""

    change: Callable[[Rollout, object], object]
    refused: Callable[[Rollout, object], object] | None
    setup: Callable[[Rollout], object] = lambda rollout: None


def _token(rollout: Rollout) -> ApiToken:
    return services.create_api_token(name="walk", scopes=["config:read"], actor=SYSTEM)[0]


def _extra_phase(rollout: Rollout) -> Phase:
    phase = Phase(
        rollout=rollout, order=99, name="Extra", percentage=100, min_watch=timedelta(hours=1)
    )
    return services.save_phase(phase, actor=SYSTEM, reason="an extra step")


def _rule(rollout: Rollout, key: str = "latency") -> GuardrailRule:
    return GuardrailRule.objects.get(rollout=rollout, key=key)


def _at_full(rollout: Rollout) -> Rollout:
    when = datetime.now(UTC) - timedelta(days=31)
    with time_machine.travel(when, tick=False):
        return services.move_to_phase(
            rollout, phase=4, actor=SYSTEM, reason="full", gate_override_reason="t", now=when
        )


def _beta(rollout: Rollout) -> Rollout:
    return services.move_to_phase(
        rollout,
        phase=2,
        actor=SYSTEM,
        reason="beta",
        gate_override_reason="t",
        now=timezone.now() - timedelta(hours=2),
    )


def _monday() -> datetime:
    return reviews.previous_week()


def _receiver_allowed(settings) -> None:
    settings.SELCONTROL_ALERT_WEBHOOK_HOSTS = "127.0.0.1"
    settings.SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE = True


CASES: dict[str, Case] = {
    "update_rollout": Case(
        lambda r, _: services.update_rollout(r, actor=SYSTEM, reason="r", percentage=10),
        lambda r, _: services.update_rollout(r, actor=SYSTEM, reason="r", percentage=101),
    ),
    "engage_kill_switch": Case(
        lambda r, _: services.engage_kill_switch(r, actor=SYSTEM, reason="stop"),
        lambda r, _: services.engage_kill_switch(r, actor=SYSTEM, reason=" "),
        setup=_beta,  # on: the kill switch has something to stop
    ),
    "release_kill_switch": Case(
        lambda r, _: services.release_kill_switch(r, actor=SYSTEM, reason="go", percentage=5),
        lambda r, _: services.release_kill_switch(
            r, actor=SYSTEM, reason="go", percentage=5, expected_revision=10**9
        ),
        setup=lambda r: services.engage_kill_switch(r, actor=SYSTEM, reason="stop"),
    ),
    "save_phase": Case(
        lambda r, phase: services.save_phase(phase, actor=SYSTEM, reason="rename"),
        lambda r, phase: services.save_phase(phase, actor=SYSTEM, reason=""),
        setup=lambda r: _renamed(r.phases.order_by("order").last()),
    ),
    "delete_phase": Case(
        lambda r, phase: services.delete_phase(phase, actor=SYSTEM, reason="not needed"),
        lambda r, phase: services.delete_phase(phase, actor=SYSTEM, reason=""),
        setup=_extra_phase,
    ),
    "move_to_phase": Case(
        lambda r, _: services.move_to_phase(
            r, phase=2, actor=SYSTEM, reason="beta", gate_override_reason="t"
        ),
        lambda r, _: services.move_to_phase(r, phase=99, actor=SYSTEM, reason="beta"),
    ),
    "set_override": Case(
        lambda r, _: services.set_override(r, CHANNEL, variant="v1", actor=SYSTEM, reason="r"),
        lambda r, _: services.set_override(r, "general", variant="v1", actor=SYSTEM, reason="r"),
    ),
    "remove_override": Case(
        lambda r, _: services.remove_override(r, CHANNEL, actor=SYSTEM, reason="r"),
        lambda r, _: services.remove_override(r, CHANNEL, actor=SYSTEM, reason=""),
        setup=lambda r: services.set_override(r, CHANNEL, variant="v1", actor=SYSTEM, reason="r"),
    ),
    "create_api_token": Case(
        lambda r, _: services.create_api_token(name="t", scopes=["config:read"], actor=SYSTEM),
        lambda r, _: services.create_api_token(name="t", scopes=["root"], actor=SYSTEM),
    ),
    "revoke_api_token": Case(
        lambda r, token: services.revoke_api_token(token, actor=SYSTEM),
        lambda r, token: services.revoke_api_token(ApiToken(pk=0, name="gone"), actor=SYSTEM),
        setup=_token,
    ),
    "hold_phase": Case(
        lambda r, _: services.hold_phase(r, actor=SYSTEM, reason="wait"),
        lambda r, _: services.hold_phase(r, actor=SYSTEM, reason="wait", expected_revision=10**9),
        setup=_beta,
    ),
    "tick_checklist_item": Case(
        lambda r, _: services.tick_checklist_item(r, 1, "factual", actor=SYSTEM, checked=True),
        lambda r, _: services.tick_checklist_item(r, 1, "nope", actor=SYSTEM, checked=True),
    ),
    "update_rule": Case(
        lambda r, _: guardrail_services.update_rule(_rule(r), actor=SYSTEM, threshold=2.0),
        lambda r, _: guardrail_services.update_rule(_rule(r), actor=SYSTEM, action="explode"),
    ),
    "reset_rule": Case(
        lambda r, _: guardrail_services.reset_rule(_rule(r), actor=SYSTEM),
        lambda r, _: guardrail_services.reset_rule(GuardrailRule(pk=0), actor=SYSTEM),
    ),
    "set_alert_webhook": Case(
        lambda r, _: guardrail_services.set_alert_webhook(
            r, url=WEBHOOK, kind="discord", actor=SYSTEM
        ),
        lambda r, _: guardrail_services.set_alert_webhook(
            r, url="http://169.254.169.254/latest", kind="discord", actor=SYSTEM
        ),
    ),
    "evaluate_on_demand": Case(
        lambda r, _: guardrail_services.evaluate_on_demand(r, actor=SYSTEM),
        None,  # nothing to refuse: it evaluates what is there
        setup=_beta,
    ),
    "draw_sample": Case(
        lambda r, _: reviews.draw_sample(
            rollout_key=r.key, week_start=_monday(), actor=SYSTEM, size=5
        ),
        lambda r, _: reviews.draw_sample(
            rollout_key=r.key, week_start=_monday() + timedelta(days=1), actor=SYSTEM, size=5
        ),
    ),
    "record_decision": Case(
        lambda r, _: deployment_report.record_decision(
            r, decision="success", actor=SYSTEM, reason="good"
        ),
        lambda r, _: deployment_report.record_decision(
            r, decision="maybe", actor=SYSTEM, reason="good"
        ),
        setup=_at_full,
    ),
}


def _renamed(phase: Phase) -> Phase:
    phase.name = f"{phase.name} (renamed)"
    return phase


def _state() -> list:
    """Every row a service may change, to tell that a failed one changed nothing."""
    tables = (
        Rollout,
        Phase,
        ChannelOverride,
        ApiToken,
        ChecklistTick,
        GuardrailRule,
        AlertSettings,
        ReviewSample,
        DeploymentDecision,
        AuditEntry,
    )
    return [sorted(map(repr, model.objects.values_list())) for model in tables]


def _run(case: Case, rollout: Rollout, which: str, settings):
    _receiver_allowed(settings)
    context = case.setup(rollout)
    rollout = Rollout.objects.get(pk=rollout.pk)
    return getattr(case, which), rollout, context


def writers() -> set[str]:
    """The public functions of the services modules that write audit rows."""
    found = set()
    for module in (services, guardrail_services, reviews, deployment_report):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_") or name == "record_audit":
                continue
            source = inspect.getsource(fn)
            if "record_audit(" in source or "_audit_draw(" in source:
                found.add(name)
    return found


def test_cases__cover_every_service_that_writes_an_audit_row():
    assert writers() == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_service__change__leaves_exactly_one_audit_row(name, rollout, settings):
    change, fresh, context = _run(CASES[name], rollout, "change", settings)
    before = AuditEntry.objects.count()
    change(fresh, context)
    assert AuditEntry.objects.count() == before + 1


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.refused))
def test_service__refused__leaves_no_audit_row_and_no_change(name, rollout, settings):
    refused, fresh, context = _run(CASES[name], rollout, "refused", settings)
    state = _state()
    with pytest.raises(REFUSALS):
        refused(fresh, context)
    assert _state() == state


@pytest.mark.parametrize("name", sorted(set(CASES) - {"evaluate_on_demand"}))
def test_service__audit_row_cannot_be_written__the_change_is_undone_too(
    name, rollout, settings, monkeypatch
):
    change, fresh, context = _run(CASES[name], rollout, "change", settings)
    state = _state()

    def full_disk(**fields):
        raise RuntimeError("could not write the audit row")

    monkeypatch.setattr(AuditEntry.objects, "create", full_disk)
    with pytest.raises(RuntimeError, match="could not write the audit row"):
        change(fresh, context)
    assert _state() == state


def test_record_audit__outside_a_transaction__refused(transactional_db, rollout):
    with pytest.raises(services.AuditOutsideTransaction, match="inside the service's transaction"):
        services.record_audit(rollout, AuditEntry.Action.PHASE_HOLD, SYSTEM, "r", {}, {})
    assert not AuditEntry.objects.filter(action="phase.hold").exists()
    with transaction.atomic():
        services.record_audit(rollout, "phase.hold", SYSTEM, "r", {}, {})
    assert AuditEntry.objects.filter(action="phase.hold").count() == 1
