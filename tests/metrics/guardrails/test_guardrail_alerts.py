"""Guardrail alerts reach a real webhook receiver on 127.0.0.1 (Discord and Slack payloads), after
the rollback has committed; a failing or hanging webhook never blocks the rollback, is retried,
and its failure is recorded on the alert."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metrics.guardrails import alerts
from metrics.guardrails.models import Alert, AlertSettings, GuardrailRule
from metrics.scheduler import InProcessBeat
from rollout.models import AuditEntry
from tests.metrics.guardrails.test_guardrail_rollback import V1, V2, Traffic, run, start_phase

PORTS = range(8900, 8950)


class Receiver:
    """A tiny webhook receiver: records each POST (and when it came, ``times``); answers
    ``status`` after ``delay`` seconds, or what ``answer(body)`` says (a status and headers)."""

    def __init__(self, status: int = 204, delay: float = 0.0):
        self.posts: list[dict] = []
        self.times: list[float] = []
        self.status, self.delay = status, delay
        self.answer: Callable[[dict], tuple[int, dict[str, str]]] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.times.append(time.monotonic())
                receiver.posts.append(body)
                status, headers = (
                    receiver.answer(body) if receiver.answer else (receiver.status, {})
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args):
                pass

        for port in PORTS:
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 8900-8949")
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def failing_receiver():
    r = Receiver(status=500)
    yield r
    r.close()


@pytest.fixture
def hanging_receiver():
    r = Receiver(delay=1.0)
    yield r
    r.close()


RECEIVER_ALLOWED = {
    "SELCONTROL_ALERT_WEBHOOK_HOSTS": "127.0.0.1",
    "SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE": "true",
}
"""The receivers listen on 127.0.0.1: admit it as a webhook host (metrics.guardrails.webhooks
refuses internal addresses by default)."""


@pytest.fixture(autouse=True)
def _quick_retries(settings):
    for name, value in RECEIVER_ALLOWED.items():
        setattr(settings, name, value)
    settings.SELCONTROL_ALERT_ATTEMPTS = 3
    settings.SELCONTROL_ALERT_BACKOFF = 0.05
    settings.SELCONTROL_ALERT_TIMEOUT = 0.3
    settings.SELCONTROL_ALERT_WEBHOOK_URL = ""


def breach_errors(rollout, capture) -> None:
    """Canary, then v2 errors at 15%: the errors rule breaches and engages the kill switch."""
    GuardrailRule.objects.filter(rollout=rollout, key="cost").update(enabled=False)  # 288k/day
    canary = start_phase(rollout, 3)
    traffic = Traffic(canary, {"v1": V1, "v2_full": replace(V2, error_rate=0.15)}, per_minute=200)
    with capture(execute=True):
        minute, _ = run(traffic, canary, minutes=15)
    assert minute is not None


def test_breach__discord_webhook__receives_the_alert_with_the_numbers(
    rollout, receiver, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind="discord")
    breach_errors(rollout, django_capture_on_commit_callbacks)
    assert len(receiver.posts) == 1
    body = receiver.posts[0]
    assert "guardrail errors breached" in body["content"]
    embed = body["embeds"][0]
    assert "v2\\_full error rate" in embed["description"]  # markdown escaped (issue 15)
    assert embed["fields"][0]["value"].startswith("kill switch engaged")
    alert = Alert.objects.get(rollout=rollout)
    assert (alert.delivery, alert.attempts) == (Alert.Delivery.SENT, 1)


def test_breach__slack_webhook__receives_text_and_blocks(
    rollout, receiver, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind="slack")
    breach_errors(rollout, django_capture_on_commit_callbacks)
    body = receiver.posts[0]
    assert body["text"].startswith("Prompts v2: guardrail errors breached")
    assert "v2_full error rate" in body["blocks"][0]["text"]["text"]


def test_breach__webhook_from_environment__is_used_without_rollout_settings(
    rollout, receiver, settings, django_capture_on_commit_callbacks
):
    settings.SELCONTROL_ALERT_WEBHOOK_URL = receiver.url
    settings.SELCONTROL_ALERT_WEBHOOK_KIND = "discord"
    breach_errors(rollout, django_capture_on_commit_callbacks)
    assert len(receiver.posts) == 1


def test_breach__webhook_answers_500__rollback_done_alert_retried_and_failed(
    rollout, failing_receiver, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=failing_receiver.url)
    breach_errors(rollout, django_capture_on_commit_callbacks)
    rollout.refresh_from_db()
    assert rollout.enabled is False
    assert AuditEntry.objects.filter(rollout=rollout, actor="guardrail:errors").exists()
    assert len(failing_receiver.posts) == 3
    alert = Alert.objects.get(rollout=rollout)
    assert (alert.delivery, alert.attempts) == (Alert.Delivery.FAILED, 3)
    assert alert.last_error.startswith("HTTP 500")


def test_breach__webhook_hangs__times_out_and_rollback_stands(
    rollout, hanging_receiver, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=hanging_receiver.url)
    breach_errors(rollout, django_capture_on_commit_callbacks)
    rollout.refresh_from_db()
    assert rollout.enabled is False
    alert = Alert.objects.get(rollout=rollout)
    assert alert.delivery == Alert.Delivery.FAILED
    assert "Timeout" in alert.last_error


def test_deliver__failed_alert_sent_again__succeeds_once_the_webhook_is_back(
    rollout, receiver, django_capture_on_commit_callbacks
):
    config = AlertSettings.objects.create(rollout=rollout, webhook_url="http://127.0.0.1:9/down")
    breach_errors(rollout, django_capture_on_commit_callbacks)
    alert = Alert.objects.get(rollout=rollout)
    assert alert.delivery == Alert.Delivery.FAILED
    config.webhook_url = receiver.url
    config.save()
    assert alerts.deliver(alert.pk) == Alert.Delivery.SENT
    alert.refresh_from_db()
    assert alert.attempts == 4 and alert.delivered_at is not None


def test_deliver__webhook_answers_404__failed_at_once_without_a_retry(rollout, receiver):
    receiver.status = 404
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url)
    alert = Alert.objects.create(rollout=rollout, title="t", message="m", numbers={})
    alerts.send_alert.apply(args=[alert.pk])
    alert.refresh_from_db()
    assert len(receiver.posts) == 1
    assert (alert.delivery, alert.attempts) == (Alert.Delivery.FAILED, 1)
    assert alert.last_error.startswith("HTTP 404")


def test_deliver__429_with_a_long_retry_after__pending_and_the_wait_capped(rollout, receiver):
    receiver.answer = lambda body: (429, {"Retry-After": "120"})
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url)
    alert = Alert.objects.create(rollout=rollout, title="t", message="m", numbers={})
    with pytest.raises(alerts.RetryLater) as later:
        alerts.deliver(alert.pk, tries_left=2)
    assert later.value.wait == alerts.MAX_RETRY_AFTER == 30.0
    alert.refresh_from_db()
    assert (alert.delivery, alert.attempts) == (Alert.Delivery.PENDING, 1)
    assert alert.last_error.startswith("HTTP 429")


def test_send_alert__eager_in_the_in_process_scheduler__retries_wait_their_countdown_there(
    rollout, failing_receiver
):
    """The quick start (no broker): in the process of `manage.py run_scheduler`, an eager run's
    retry is left to the scheduler's ticks after its countdown (0.05 s, then 0.1 s here), not
    made at once; the alert is pending meanwhile."""
    AlertSettings.objects.create(rollout=rollout, webhook_url=failing_receiver.url)
    alert = Alert.objects.create(rollout=rollout, title="t", message="m", numbers={})
    beat = InProcessBeat(schedule={})
    with beat.running_here():
        alerts.send_alert.apply(args=[alert.pk])
        alert.refresh_from_db()
        assert (len(failing_receiver.posts), alert.delivery, alert.attempts) == (1, "pending", 1)
        assert beat.pending_calls == 1 and beat.tick() <= 0.05  # not due yet: nothing sent
        assert len(failing_receiver.posts) == 1
        while beat.pending_calls:
            time.sleep(beat.tick())
    times = failing_receiver.times
    assert len(times) == 3
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    alert.refresh_from_db()
    assert (alert.delivery, alert.attempts) == (Alert.Delivery.FAILED, 3)
    assert alert.last_error.startswith("HTTP 500")
