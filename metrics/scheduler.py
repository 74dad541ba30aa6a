"""The beat schedule run in-process, for a deployment without a broker (the quick start).

Production runs Celery beat and a worker (``make beat``, ``make worker``); without a broker
nothing would run the periodic tasks, and the console would say "watched every minute" of
guardrails nobody evaluates. ``InProcessBeat`` reads the same ``beat_schedule`` the Celery app
has (CELERY_BEAT_SCHEDULE in selcontrol/settings.py: rollups every 30 s, guardrails every minute,
the weekly review sample, the heartbeat) and runs each task in this process when it is due, with
Celery's own schedule objects deciding when. ``manage.py run_scheduler`` runs it; ``scripts/run``
starts that command beside the web server when no ``REDIS_URL`` is set (and a real worker with beat
when one is).

A task that raises is logged and tried again at its next tick: one failing job never stops the
others. Each task is idempotent (see ``metrics.tasks``), so running this beside a real beat by
mistake does no harm beyond the work done twice.

``call_later`` runs a one-off call at a later tick: an eager task's retry with its countdown (the
alert webhook's, ``metrics.guardrails.alerts``), which has no broker to wait in. ``running()`` is
the beat running in this process, if any.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import schedules

logger = logging.getLogger("selcontrol.scheduler")

_running: InProcessBeat | None = None


def running() -> InProcessBeat | None:
    """The beat running in this process (``manage.py run_scheduler``), or None."""
    return _running


@dataclass
class Entry:
    name: str
    task: str
    schedule: Any  # celery.schedules.schedule or crontab
    last_run_at: datetime
    runs: int = 0
    failures: int = 0


def _schedule_of(value: Any, app) -> Any:
    if isinstance(value, int | float):
        return schedules.schedule(run_every=timedelta(seconds=value), app=app)
    if isinstance(value, timedelta):
        return schedules.schedule(run_every=value, app=app)
    value.app = app
    return value


class InProcessBeat:
    """Run a Celery beat schedule's tasks in this process (``tick`` once, or ``run`` a loop).

    Interval entries are due at start (the state is fresh at once); crontab entries wait for
    their time, as beat does.
    """

    def __init__(
        self,
        app=None,
        schedule: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        run_task: Callable[[str], Any] | None = None,
    ):
        if app is None:
            from selcontrol.celery import app as celery_app

            app = celery_app
        self.app = app
        self.run_task = run_task or self._apply
        now = app.now()
        self.entries: list[Entry] = []
        for name, spec in (app.conf.beat_schedule if schedule is None else schedule).items():
            sched = _schedule_of(spec["schedule"], app)
            interval = isinstance(sched, schedules.schedule)  # a crontab is not one
            start = now - sched.run_every if interval else now
            self.entries.append(Entry(name, spec["task"], sched, start))
        self._later: list[tuple[float, int, Callable[[], Any]]] = []
        self._order = itertools.count()

    def call_later(self, seconds: float, call: Callable[[], Any]) -> None:
        """Run ``call`` once, at the first tick ``seconds`` from now (same thread as the ticks)."""
        heapq.heappush(self._later, (time.monotonic() + seconds, next(self._order), call))

    @property
    def pending_calls(self) -> int:
        return len(self._later)

    def _run_due_calls(self) -> None:
        while self._later and self._later[0][0] <= time.monotonic():
            _, _, call = heapq.heappop(self._later)
            try:
                call()
            except Exception:  # noqa: BLE001 - one failing call must not stop the others
                logger.exception("deferred call %r failed", call)

    @contextmanager
    def running_here(self) -> Iterator[InProcessBeat]:
        """This beat is ``running()`` in this process meanwhile."""
        global _running
        outer, _running = _running, self
        try:
            yield self
        finally:
            _running = outer

    def _apply(self, task_name: str) -> Any:
        """Run the registered task in this process, as an eager worker would."""
        return self.app.tasks[task_name].apply(throw=True).get()

    def tick(self) -> float:
        """Run every due entry once; returns the seconds until the next one is due."""
        wait = 60.0
        self._run_due_calls()
        for entry in self.entries:
            due, next_seconds = entry.schedule.is_due(entry.last_run_at)
            if due:
                entry.last_run_at = self.app.now()
                try:
                    self.run_task(entry.task)
                    entry.runs += 1
                except Exception:  # noqa: BLE001 - one failing job must not stop the others
                    entry.failures += 1
                    logger.exception("scheduled task %s (%s) failed", entry.name, entry.task)
                due, next_seconds = entry.schedule.is_due(entry.last_run_at)
            wait = min(wait, max(0.5, float(next_seconds)))
        if self._later:
            wait = min(wait, max(0.01, self._later[0][0] - time.monotonic()))
        return wait

    def run(self, stop: threading.Event | None = None) -> None:
        """Tick until ``stop`` is set (or forever)."""
        stop = stop or threading.Event()
        names = ", ".join(f"{e.name} ({e.task})" for e in self.entries)
        logger.info("in-process scheduler running: %s", names)
        with self.running_here():
            while not stop.is_set():
                stop.wait(self.tick())
