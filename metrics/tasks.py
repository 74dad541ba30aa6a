"""Celery tasks of metrics: thin wrappers around metrics.rollups, idempotent and safe to re-run.

``update_rollups`` attributes late reactions/follow-ups and recomputes dirty (rollout, hour)
buckets. Ingest schedules it after each commit (at most one queued at a time, through a cache
flag); a beat entry runs it every 30 seconds as a catch-up; ``manage.py update_rollups`` does the
same without a broker. With acks_late (settings) a worker killed mid-run leaves the task to be
redelivered, and a bucket's recompute is one transaction, so nothing is half-done.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from selcontrol.celery import app

from . import rollups

logger = logging.getLogger("selcontrol.metrics")

QUEUED_KEY = "metrics:rollups-queued"
CATCH_UP_SECONDS = 30.0

app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    "metrics-update-rollups": {
        "task": "metrics.tasks.update_rollups",
        "schedule": CATCH_UP_SECONDS,
        "options": {"expires": CATCH_UP_SECONDS - 5},
    },
}


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
        if app.conf.task_always_eager:
            update_rollups.apply()
            return
        if cache.add(QUEUED_KEY, 1, timeout=60):
            update_rollups.apply_async(countdown=1)
    except Exception:  # noqa: BLE001 - the broker or cache may be down; the beat catches up
        cache.delete(QUEUED_KEY)
        logger.exception("could not schedule a rollup run; the beat entry will catch up")
