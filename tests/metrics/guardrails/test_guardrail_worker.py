"""The beat's guardrail task on a real Celery worker (Redis broker, committed data): the worker
evaluates, engages the kill switch, and after the commit the alert task posts to a webhook
receiver on 127.0.0.1."""

from __future__ import annotations

import importlib
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps

from metrics.guardrails.models import Alert, AlertSettings, GuardrailRule
from metrics.ingest.intake import record_events
from metrics.tasks import evaluate_guardrails
from rollout import services
from rollout.models import AuditEntry, Rollout
from tests.metrics.guardrails.test_guardrail_alerts import RECEIVER_ALLOWED, Receiver
from tests.metrics.guardrails.test_guardrail_rollback import V1, V2, Traffic
from tests.metrics.test_concurrency import _start_worker, _wait, worker_env  # noqa: F401 - a fixture


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.live
def test_beat_task__on_a_real_worker__rolls_back_then_alerts(worker_env, receiver, tmp_path):  # noqa: F811
    importlib.import_module("metrics.migrations.0004_guardrails_alerts_decisions").preload(
        apps, None
    )
    rollout = Rollout.objects.get(key="prompts_v2")
    # the crash guard would breach too at 15% errors (above its 10%): one rule, one alert here
    GuardrailRule.objects.filter(rollout=rollout, key__in=["cost", "crash"]).update(enabled=False)
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind="slack")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    services.move_to_phase(
        rollout,
        phase=3,
        actor=services.Actor("pytest", via="system"),
        reason="canary",
        gate_override_reason="test",
        now=start,
    )
    traffic = Traffic(rollout, {"v1": V1, "v2_full": replace(V2, error_rate=0.15)}, per_minute=100)
    for minute in range(18):
        record_events(traffic.events(start + timedelta(minutes=minute)))
    worker = _start_worker({**worker_env, **RECEIVER_ALLOWED}, tmp_path / "worker.log")
    try:
        evaluate_guardrails.delay()  # what the beat entry sends every minute
        _wait(lambda: not Rollout.objects.get(pk=rollout.pk).enabled, 60, "the kill switch")
        _wait(lambda: len(receiver.posts) == 1, 30, "the alert at the receiver")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
    assert (
        AuditEntry.objects.get(rollout=rollout, action="kill_switch.engage").actor
        == "guardrail:errors"
    )
    assert "guardrail errors breached" in receiver.posts[0]["text"]
    _wait(lambda: Alert.objects.get().delivery == Alert.Delivery.SENT, 10, "the delivery recorded")
