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
from .guardrails import alerts

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
# runs the same evaluation without a broker. The alert delivery task (``metrics.tasks.send_alert``)
# is defined in metrics.guardrails.alerts, where it is queued; importing that module here is what
# registers it with a worker (autodiscovery imports this module).


@shared_task(name="metrics.tasks.evaluate_guardrails", acks_late=True, ignore_result=True)
def evaluate_guardrails() -> dict[str, dict[str, str]]:
    from .guardrails import services as guardrail_services

    outcomes = guardrail_services.evaluate_all()
    alerts.resend_stale_alerts()
    return {key: {o.rule: o.status for o in rows} for key, rows in outcomes.items()}


# --- Weekly review sample (review feature: metrics/reviews/services.py, docs/reviews.md) -------


@shared_task(name="metrics.tasks.draw_weekly_review_sample", acks_late=True, ignore_result=True)
def draw_weekly_review_sample() -> list[int]:
    """Draw last week's review sample of every rollout that had replies, unless drawn already
    (idempotent: one scheduled sample per rollout and week, a unique constraint)."""
    from .reviews import services as reviews

    return [sample.pk for sample in reviews.draw_scheduled_samples()]
