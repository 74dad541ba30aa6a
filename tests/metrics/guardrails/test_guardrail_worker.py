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

from metrics.guardrails import alerts
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


@pytest.mark.live
def test_alert_task__webhook_fails_twice__worker_retries_on_the_backoff_and_sends_once(
    worker_env,  # noqa: F811
    receiver,
    tmp_path,
):
    """Celery's retries on a real worker (solo pool, one task at a time): a 500, then a 429 with
    Retry-After 3, then success; the retries wait their countdown (1 s of backoff, then the 3 s
    the webhook asked for) in the broker, not in the worker, which sends another alert meanwhile;
    the alert is pending between tries, sent once, and never again after success."""
    importlib.import_module("metrics.migrations.0004_guardrails_alerts_decisions").preload(
        apps, None
    )
    rollout = Rollout.objects.get(key="prompts_v2")
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind="slack")
    flaky, steady, last = (
        Alert.objects.create(rollout=rollout, title=title, message="m", numbers={})
        for title in ("flaky", "steady", "last")
    )

    def answer(body: dict) -> tuple[int, dict[str, str]]:
        tries = sum("flaky" in post["text"] for post in receiver.posts)  # this one included
        if "flaky" in body["text"] and tries <= 2:
            return (500, {}) if tries == 1 else (429, {"Retry-After": "3"})
        return 204, {}

    receiver.answer = answer
    env = {
        **worker_env,
        **RECEIVER_ALLOWED,
        "SELCONTROL_ALERT_ATTEMPTS": "3",
        "SELCONTROL_ALERT_BACKOFF": "1.0",
        "SELCONTROL_ALERT_TIMEOUT": "2",
    }
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        alerts.schedule_alert(flaky.pk)  # what the commit of a breach queues
        _wait(lambda: len(receiver.posts) == 1, 60, "the first try")
        _wait(lambda: Alert.objects.get(pk=flaky.pk).attempts == 1, 10, "the first try recorded")
        first = Alert.objects.get(pk=flaky.pk)
        assert (first.delivery, first.last_error) == (Alert.Delivery.PENDING, "HTTP 500: ")
        alerts.schedule_alert(steady.pk)
        _wait(lambda: Alert.objects.get(pk=flaky.pk).delivery == "sent", 30, "the third try")
        alerts.schedule_alert(flaky.pk)  # sent already: a resend must not post it again
        alerts.schedule_alert(last.pk)  # the solo worker takes it after that resend
        _wait(lambda: Alert.objects.get(pk=last.pk).delivery == "sent", 30, "the last alert")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
    order = [post["text"].split(":")[0] for post in receiver.posts]  # "<title>: alert only"
    assert order == ["flaky", "steady", "flaky", "flaky", "last"], order
    flaky_times = [
        t for t, p in zip(receiver.times, receiver.posts, strict=True) if "flaky" in p["text"]
    ]
    assert flaky_times[1] - flaky_times[0] >= 0.9  # the backoff: 1 s
    assert flaky_times[2] - flaky_times[1] >= 2.9  # Retry-After: 3 s (the backoff would be 2)
    sent = Alert.objects.get(pk=flaky.pk)
    assert (sent.delivery, sent.attempts, sent.last_error) == (Alert.Delivery.SENT, 3, "")
    assert sent.delivered_at is not None
