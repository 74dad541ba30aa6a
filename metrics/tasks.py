"""Celery tasks of metrics: thin wrappers around metrics.rollups, idempotent and safe to re-run.

``update_rollups`` attributes late reactions/follow-ups and recomputes dirty (rollout, hour)
buckets. Ingest schedules it after each commit (at most one queued at a time, through a cache
flag); a beat entry runs it every 30 seconds as a catch-up; ``manage.py update_rollups`` does the
same without a broker. The beat schedule (every periodic job of the project) is
CELERY_BEAT_SCHEDULE in selcontrol/settings.py. With acks_late (settings) a worker killed mid-run
leaves the task to be redelivered, and a bucket's recompute is one transaction, so nothing is
half-done.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from . import rollups

logger = logging.getLogger("selcontrol.metrics")

QUEUED_KEY = "metrics:rollups-queued"


@shared_task(name="metrics.tasks.update_rollups", acks_late=True, ignore_result=True)
def update_rollups() -> dict[str, int]:
    cache.delete(QUEUED_KEY)  # events arriving from now on schedule another run
    outcome = rollups.catch_up(time_budget=50.0)
    if outcome["remaining"] and outcome["recomputed"]:
        schedule_rollups()  # more than one run's worth (a backfill): continue
    return outcome


def schedule_rollups() -> None:
    """Queue one rollup run unless one is already queued. Never raises: the events are stored
    and dirty-marked, so a broker outage only delays rollups (readers stay exact meanwhile)."""
    try:
        if update_rollups.app.conf.task_always_eager:
            update_rollups.apply()
            return
        if cache.add(QUEUED_KEY, 1, timeout=60):
            update_rollups.apply_async(countdown=1)
    except Exception:  # noqa: BLE001 - the broker or cache may be down; the beat catches up
        cache.delete(QUEUED_KEY)
        logger.exception("could not schedule a rollup run; the beat entry will catch up")


# --- Guardrails (issue 8): evaluate every rule every minute; send alerts after the commit -------
# See metrics.guardrails.services and metrics.guardrails.alerts; `manage.py evaluate_guardrails`
# runs the same evaluation without a broker.

ALERT_RESEND_AFTER_SECONDS = 300


@shared_task(name="metrics.tasks.evaluate_guardrails", acks_late=True, ignore_result=True)
def evaluate_guardrails() -> dict[str, dict[str, str]]:
    from .guardrails import services as guardrail_services

    outcomes = guardrail_services.evaluate_all()
    resend_stale_alerts()
    return {key: {o.rule: o.status for o in rows} for key, rows in outcomes.items()}


@shared_task(name="metrics.tasks.send_alert", acks_late=True, ignore_result=True)
def send_alert(alert_id: int) -> str:
    from .guardrails import alerts

    return alerts.deliver(alert_id)


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
    from datetime import timedelta

    from django.utils import timezone

    from .guardrails.models import Alert

    cutoff = timezone.now() - timedelta(seconds=ALERT_RESEND_AFTER_SECONDS)
    stale = list(
        Alert.objects.filter(delivery=Alert.Delivery.PENDING, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:20]
    )
    for alert_id in stale:
        schedule_alert(alert_id)
    return len(stale)


# --- Weekly review sample (review feature: metrics/reviews/services.py, docs/reviews.md) -------


@shared_task(name="metrics.tasks.draw_weekly_review_sample", acks_late=True, ignore_result=True)
def draw_weekly_review_sample() -> list[int]:
    """Draw last week's review sample of every rollout that had replies, unless drawn already
    (idempotent: one scheduled sample per rollout and week, a unique constraint)."""
    from .reviews import services as reviews

    return [sample.pk for sample in reviews.draw_scheduled_samples()]
