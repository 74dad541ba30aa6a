"""Heartbeats of the Celery worker and beat, so that a process that stopped working shows.

Without the worker there is no automatic rollback, no alert and no rollup, and a worker can be
running yet doing nothing (stuck, or disconnected from the broker for good); the web process
could not tell (issue 15). Two timestamps in the shared cache (Redis) tell it:

* ``beat``: the last time beat handed a task to the broker (``HeartbeatScheduler``, beat's
  scheduler: every entry it sends counts; ``selcontrol.heartbeat`` is sent every
  HEARTBEAT_SECONDS).
* ``worker``: the last time a worker showed it works: its main process sends Celery's own
  ``worker-heartbeat`` to the broker every 2 s while it is connected (recorded at most every
  HEARTBEAT_SECONDS), and it records each task it runs (``selcontrol.heartbeat`` and every
  other task as it finishes). So a dead beat leaves the worker's heartbeat fresh, and a dead or
  disconnected worker leaves beat's fresh: each shows on its own.

``status()`` reads both; ``/metrics`` has their ages (``selcontrol_heartbeat_age_seconds``),
``/readyz`` shows them, ``/readyz?deep=1`` answers 503 when one is
older than SELCONTROL_HEARTBEAT_STALE_SECONDS (90), the rollout page's guardrail panel shows a
stale one, and ``manage.py heartbeat check worker|beat`` is the containers' health check. Without
a broker (tasks run in-process) there is nothing to watch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from celery import shared_task
from celery.beat import PersistentScheduler
from celery.signals import heartbeat_sent, task_postrun
from django.conf import settings
from django.core.cache import cache
from prometheus_client.core import GaugeMetricFamily

from .telemetry import register_collector

logger = logging.getLogger("selcontrol.heartbeat")

PROCESSES = ("worker", "beat")
KEY = "selcontrol:heartbeat:{}"
HEARTBEAT_SECONDS = settings.SELCONTROL_HEARTBEAT_SECONDS
"""How often beat sends the heartbeat task (its entry in CELERY_BEAT_SCHEDULE), and at most how
often a worker records its own."""
_last_recorded = {"worker": 0.0}


def stale_after() -> float:
    return float(settings.SELCONTROL_HEARTBEAT_STALE_SECONDS)


def beat(process: str, at: float | None = None) -> None:
    """Record that ``process`` ("worker" or "beat") did its work now. Never raises: a broken
    cache must not fail a task (the heartbeat then goes stale, which is the truth)."""
    try:
        cache.set(KEY.format(process), at if at is not None else time.time(), timeout=None)
    except Exception:  # noqa: BLE001 - the cache (Redis) may be down
        logger.warning("could not record the %s heartbeat", process, exc_info=True)


@dataclass(frozen=True)
class Heartbeat:
    process: str
    at: float | None
    age: float | None
    stale: bool

    def describe(self) -> str:
        if self.at is None:
            return f"no {self.process} heartbeat yet: is a {self.process} running?"
        age = f"{self.age:.0f} s ago"
        if self.stale:
            every = f"{HEARTBEAT_SECONDS:g} s"
            return f"stale: the {self.process} last worked {age} (expected every {every})"
        return f"ok ({age})"


def status(now: float | None = None) -> dict[str, Heartbeat]:
    """Both heartbeats; ``stale`` past ``stale_after()`` seconds or when never seen."""
    now = now if now is not None else time.time()
    try:
        values = cache.get_many([KEY.format(p) for p in PROCESSES])
    except Exception:  # noqa: BLE001 - the cache (Redis) may be down
        values = {}
    limit = stale_after()
    found = {}
    for process in PROCESSES:
        at = values.get(KEY.format(process))
        age = max(0.0, now - float(at)) if at is not None else None
        found[process] = Heartbeat(process, at, age, age is None or age > limit)
    return found


def watched() -> bool:
    """Whether a worker and beat are expected (a broker is configured, tasks are not eager)."""
    return bool(settings.CELERY_BROKER_URL) and not settings.CELERY_TASK_ALWAYS_EAGER


@shared_task(name="selcontrol.heartbeat", ignore_result=True)
def heartbeat_task() -> None:
    """Sent by beat every HEARTBEAT_SECONDS; the worker that runs it records its heartbeat."""
    beat("worker")


@task_postrun.connect
def _worker_ran_a_task(**kwargs) -> None:
    """Every task a worker finishes counts as a sign of life too (not in eager mode: there the
    web process runs tasks itself, which says nothing about a worker)."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        beat("worker")


@heartbeat_sent.connect
def _worker_main_process_alive(**kwargs) -> None:
    """Celery's worker-heartbeat (every 2 s, only while the consumer is connected)."""
    now = time.monotonic()
    if now - _last_recorded["worker"] >= HEARTBEAT_SECONDS:
        _last_recorded["worker"] = now
        beat("worker")


class HeartbeatScheduler(PersistentScheduler):
    """Beat's scheduler (CELERY_BEAT_SCHEDULER): records beat's heartbeat each time it has
    handed a task to the broker, so beat alive but unable to send shows as stale too."""

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        beat("beat")
        return result


@register_collector
def _heartbeat_gauges() -> Iterator[GaugeMetricFamily]:
    """``selcontrol_heartbeat_age_seconds{process}`` on /metrics (-1: never seen)."""
    if not watched():
        return
    gauge = GaugeMetricFamily(
        "selcontrol_heartbeat_age_seconds",
        "Seconds since the Celery worker or beat last showed it works (-1: never).",
        labels=["process"],
    )
    for name, b in status().items():
        gauge.add_metric([name], -1.0 if b.age is None else b.age)
    yield gauge
