"""Guardrail alerts to a Discord or Slack webhook (httpx), with a timeout and retries.

An alert row is written in the transaction that records the breach (and the rollback, when the rule
rolls back); its delivery is queued after the commit (``transaction.on_commit``) as the Celery task
``metrics.tasks.send_alert`` (defined below, under that name), so a slow or failing webhook never
delays or undoes a rollback. ``deliver`` tries up to SELCONTROL_ALERT_ATTEMPTS times with
exponential backoff (SELCONTROL_ALERT_BACKOFF seconds, doubled each time; a 429's Retry-After is
honoured up to 30 s), each request bounded by SELCONTROL_ALERT_TIMEOUT seconds; a 4xx other than
408/429 is not retried. The outcome (sent, failed with the last error, or not configured) is kept on
the row and shown on the console. Where to send: the rollout's AlertSettings, else
SELCONTROL_ALERT_WEBHOOK_URL (kind from SELCONTROL_ALERT_WEBHOOK_KIND, or guessed from the URL).

Hostile input (issue 15): the URL is checked again before every attempt (``webhooks.check_url``:
Discord/Slack hosts, public addresses only), and every text is escaped for its chat
(``webhooks.discord_text`` / ``slack_text``) with mentions turned off, because alert texts carry
host names and instance ids that bots report with their token.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from selcontrol_client.events import backoff_delay

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


def deliver(alert_id: int, *, sleep=time.sleep) -> str:
    """Send one alert; returns its delivery state. Safe to call again for a failed alert."""
    alert = Alert.objects.select_related("rollout").filter(pk=alert_id).first()
    if alert is None or alert.delivery == Alert.Delivery.SENT:
        return alert.delivery if alert else "missing"
    where = target(alert)
    if where is None:
        Alert.objects.filter(pk=alert.pk).update(delivery=Alert.Delivery.NOT_CONFIGURED)
        return Alert.Delivery.NOT_CONFIGURED
    url, kind = where
    attempts = max(1, int(settings.SELCONTROL_ALERT_ATTEMPTS))
    backoff = float(settings.SELCONTROL_ALERT_BACKOFF)
    timeout = float(settings.SELCONTROL_ALERT_TIMEOUT)
    body = payload(alert, kind)
    error = ""
    tried = 0
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for attempt in range(attempts):
            wait = backoff_delay(attempt + 1, base=backoff)
            try:
                check_url(url)  # again at each attempt: the name may resolve elsewhere now
            except WebhookRefused as exc:
                error = str(exc)
                break
            tried += 1
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
            else:
                if response.is_success:
                    Alert.objects.filter(pk=alert.pk).update(
                        delivery=Alert.Delivery.SENT,
                        attempts=alert.attempts + tried,
                        last_error="",
                        delivered_at=timezone.now(),
                    )
                    return Alert.Delivery.SENT
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code == 429:
                    try:
                        wait = min(
                            MAX_RETRY_AFTER, float(response.headers.get("Retry-After", wait))
                        )
                    except ValueError:
                        pass
                elif 400 <= response.status_code < 500 and response.status_code != 408:
                    break  # the webhook refuses this request; repeating it will not help
            if attempt + 1 < attempts:
                sleep(wait)
    logger.warning(
        "alert %s to %s webhook failed after %s attempt(s): %s", alert.pk, kind, tried, error
    )
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


@shared_task(name="metrics.tasks.send_alert", acks_late=True, ignore_result=True)
def send_alert(alert_id: int) -> str:
    return deliver(alert_id)


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
