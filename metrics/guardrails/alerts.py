"""Guardrail alerts to a Discord or Slack webhook (httpx), with a timeout and retries.

An alert row is written in the transaction that records the breach (and the rollback, when the rule
rolls back); its delivery is queued after the commit (``transaction.on_commit``) as the Celery task
``metrics.tasks.send_alert`` (defined below, under that name), so a slow or failing webhook never
delays or undoes a rollback. Each run of the task makes one try (``deliver``), bounded by
SELCONTROL_ALERT_TIMEOUT seconds; a failure another try may mend (a network error, 408, 429, 5xx)
leaves the alert pending and re-queues the task with Celery's retry, its countdown the backoff
(SELCONTROL_ALERT_BACKOFF seconds, doubled each time; a 429's Retry-After honoured up to 30 s),
up to SELCONTROL_ALERT_ATTEMPTS tries in all; a 4xx other than 408/429 is not retried. The outcome
(sent, failed with the last error, or not configured) is kept on the row and shown on the console.
Where to send: the rollout's AlertSettings, else SELCONTROL_ALERT_WEBHOOK_URL (kind from
SELCONTROL_ALERT_WEBHOOK_KIND, or guessed from the URL).

Hostile input (issue 15): the URL is checked again before every attempt (``webhooks.check_url``:
Discord/Slack hosts, public addresses only), and every text is escaped for its chat
(``webhooks.discord_text`` / ``slack_text``) with mentions turned off, because alert texts carry
host names and instance ids that bots report with their token.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from selcontrol_client.events import backoff_delay

from .. import scheduler
from .models import Alert, AlertSettings
from .webhooks import WebhookRefused, check_url, defang_urls, discord_text, slack_text

logger = logging.getLogger("selcontrol.guardrails")

DISCORD, SLACK = "discord", "slack"
RED, ORANGE = 0xD73A49, 0xE3A008
MAX_RETRY_AFTER = 30.0


def guess_kind(url: str) -> str:
    return SLACK if "hooks.slack.com" in url else DISCORD


def target(alert: Alert) -> tuple[str, str] | None:
    """(url, kind) for the alert's rollout, or None when no webhook is configured."""
    config = AlertSettings.objects.filter(rollout_id=alert.rollout_id).first()
    if config and config.webhook_url:
        return config.webhook_url, config.kind
    url = settings.SELCONTROL_ALERT_WEBHOOK_URL
    if url:
        return url, settings.SELCONTROL_ALERT_WEBHOOK_KIND or guess_kind(url)
    return None


def _link(alert: Alert) -> str:
    base = settings.SELCONTROL_BASE_URL.rstrip("/")
    return f"{base}/rollouts/{alert.rollout.key}/" if base else ""


def _discord_title(text: str) -> str:
    """An embed title shows no markdown (a backslash would show), but must not link or mention."""
    return defang_urls(text).replace("@", "@\u200b")


def payload(alert: Alert, kind: str) -> dict[str, Any]:
    """The JSON body for a Discord webhook (content + embed) or a Slack incoming webhook. Every
    text from the alert is escaped for the chat and nothing in it can mention anyone."""
    action = alert.action_taken or "alert only"
    link = _link(alert)
    if kind == SLACK:
        title, message = slack_text(alert.title), slack_text(alert.message)
        text = f":rotating_light: *{title}*\n{message}\n*Action:* {slack_text(action)}"
        if link:
            text += f"\n<{link}|Open the console>"
        return {
            "text": f"{title}: {slack_text(action)}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
            "unfurl_links": False,
            "unfurl_media": False,
        }
    embed: dict[str, Any] = {
        "title": _discord_title(alert.title)[:256],
        "description": discord_text(alert.message)[:4000],
        "color": RED if alert.action_taken and "alert only" not in action else ORANGE,
        "fields": [{"name": "Action", "value": discord_text(action)[:1000]}],
        "timestamp": alert.created_at.isoformat(),
    }
    if link:
        embed["url"] = link
    return {
        "username": "selcontrol",
        "content": f"🚨 {discord_text(alert.title)}"[:2000],
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


class RetryLater(Exception):
    """A try failed in a way another may mend (a network error, 408, 429, 5xx): try again in
    ``wait`` seconds. Raised by ``deliver`` only when the caller has tries left."""

    def __init__(self, wait: float, error: str):
        super().__init__(error)
        self.wait, self.error = wait, error


def _retry_wait(response: httpx.Response | None, failures: int) -> float | None:
    """Seconds before the next try after this failure (``failures`` in a row so far), or None
    when repeating the request will not help (a 4xx other than 408 and 429)."""
    wait = backoff_delay(failures, base=float(settings.SELCONTROL_ALERT_BACKOFF))
    if response is None or response.status_code >= 500 or response.status_code == 408:
        return wait
    if response.status_code == 429:
        try:
            return max(0.0, min(MAX_RETRY_AFTER, float(response.headers["Retry-After"])))
        except (KeyError, ValueError):
            return wait
    return None  # the webhook refuses this request


def deliver(alert_id: int, *, tries_left: int = 0, failures: int = 0) -> str:
    """Make one try to send one alert; returns its delivery state. Safe to call again for a failed
    alert, and never sends one already sent.

    With ``tries_left`` (the task's remaining retries), a failure another try may mend leaves the
    alert pending and raises ``RetryLater`` with the wait (backoff from ``failures``, the failed
    tries of this delivery before this one, or a 429's Retry-After); otherwise the alert is marked
    failed with the error. The alert row is locked for the try, so two deliveries of one alert (a
    retry and the stale-alert resend) take turns and the second sees it sent."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None or alert.delivery == Alert.Delivery.SENT:
            return alert.delivery if alert else "missing"
        where = target(alert)
        if where is None:
            Alert.objects.filter(pk=alert.pk).update(delivery=Alert.Delivery.NOT_CONFIGURED)
            return Alert.Delivery.NOT_CONFIGURED
        url, kind = where
        try:
            check_url(url)  # again at each try: the name may resolve elsewhere now
        except WebhookRefused as exc:
            return _failed(alert, kind, str(exc), tried=0)
        response = None
        try:
            with httpx.Client(
                timeout=float(settings.SELCONTROL_ALERT_TIMEOUT), follow_redirects=False
            ) as client:
                response = client.post(url, json=payload(alert, kind))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        else:
            if response.is_success:
                Alert.objects.filter(pk=alert.pk).update(
                    delivery=Alert.Delivery.SENT,
                    attempts=alert.attempts + 1,
                    last_error="",
                    delivered_at=timezone.now(),
                )
                return Alert.Delivery.SENT
            error = f"HTTP {response.status_code}: {response.text[:300]}"
        wait = _retry_wait(response, failures + 1)
        if wait is None or tries_left <= 0:
            return _failed(alert, kind, error, tried=1)
        Alert.objects.filter(pk=alert.pk).update(
            delivery=Alert.Delivery.PENDING, attempts=alert.attempts + 1, last_error=error
        )
    raise RetryLater(wait, error)


def _failed(alert: Alert, kind: str, error: str, *, tried: int) -> str:
    logger.warning("alert %s to %s webhook failed: %s", alert.pk, kind, error)
    Alert.objects.filter(pk=alert.pk).update(
        delivery=Alert.Delivery.FAILED, attempts=alert.attempts + tried, last_error=error
    )
    return Alert.Delivery.FAILED


def queue_delivery(alert: Alert) -> None:
    """Send the alert once the current transaction (with the rollback) has committed."""
    transaction.on_commit(lambda: schedule_alert(alert.pk), robust=True)


# --- Delivery as a Celery task. The task is defined here, where it is queued, so that this module
# and metrics.tasks do not import each other; it keeps its registered name (queued messages and
# the docs name it), and metrics.tasks imports this module so that a worker registers it.

ALERT_RESEND_AFTER_SECONDS = 300


@shared_task(bind=True, name="metrics.tasks.send_alert", acks_late=True, ignore_result=True)
def send_alert(self, alert_id: int) -> str:
    """One try per run; a failure another try may mend queues the task again (Celery's retry,
    with the backoff as its countdown) until SELCONTROL_ALERT_ATTEMPTS tries in all. Nothing
    sleeps in a worker. Run eagerly (no broker: the quick start, the tests), see
    ``_retry_in_process`` (Celery's own eager retry would run at once, and raises instead with
    CELERY_TASK_EAGER_PROPAGATES)."""
    tries = max(1, int(settings.SELCONTROL_ALERT_ATTEMPTS))
    done = self.request.retries  # tries of this delivery before this run
    try:
        return deliver(alert_id, tries_left=tries - done - 1, failures=done)
    except RetryLater as later:
        if self.request.is_eager:  # no broker to hold the countdown
            return _retry_in_process(self, alert_id, retries=done + 1, wait=later.wait)
        raise self.retry(
            countdown=later.wait,
            expires=later.wait + ALERT_RESEND_AFTER_SECONDS,
            max_retries=tries - 1,
        ) from None


def _retry_in_process(task, alert_id: int, *, retries: int, wait: float) -> str:
    """An eager run's retry: after its countdown at a tick of the in-process scheduler when this
    process runs one (the quick start's ``manage.py run_scheduler``, where the minute's
    evaluation breaches and rolls back), else at once (a request, a management command: no
    process stays to keep a countdown; docs/guardrails.md says why that is acceptable)."""
    again = partial(task.apply, args=[alert_id], retries=retries)
    beat = scheduler.running()
    if beat is None:
        return again().get()
    beat.call_later(wait, again)
    return Alert.Delivery.PENDING


def schedule_alert(alert_id: int) -> None:
    """Queue an alert's delivery (called after the commit). Never raises: a broker outage leaves
    the alert pending, and the guardrail beat entry sends pending alerts left behind."""
    try:
        if send_alert.app.conf.task_always_eager:
            send_alert.apply(args=[alert_id])
        else:
            send_alert.apply_async(args=[alert_id], expires=ALERT_RESEND_AFTER_SECONDS)
    except Exception:  # noqa: BLE001 - the alert row is kept; it is retried later
        logger.exception(
            "could not queue alert %s; the guardrail beat entry will retry it", alert_id
        )


def resend_stale_alerts() -> int:
    """Queue alerts still pending after ALERT_RESEND_AFTER_SECONDS (a lost task, a broker
    outage)."""
    cutoff = timezone.now() - timedelta(seconds=ALERT_RESEND_AFTER_SECONDS)
    stale = list(
        Alert.objects.filter(delivery=Alert.Delivery.PENDING, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:20]
    )
    for alert_id in stale:
        schedule_alert(alert_id)
    return len(stale)
