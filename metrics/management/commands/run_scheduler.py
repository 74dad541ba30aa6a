"""Run the Celery beat schedule's periodic tasks in this process, without a broker.

    python manage.py run_scheduler [--once]

What ``make run`` starts beside the web server when no ``REDIS_URL`` is set: rollups every 30 s,
the guardrails every minute (so an automatic rollback happens in the quick start as in
production), the weekly review sample on Mondays. With a broker, run ``make worker`` and
``make beat`` instead. ``--once`` runs every interval entry once and exits.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand

from metrics import tasks  # noqa: F401 - registers the tasks the beat schedule names
from metrics.scheduler import InProcessBeat


class Command(BaseCommand):
    help = "Run the periodic tasks (rollups, guardrails, review sample) in-process, no broker."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run due entries once and exit.")

    def handle(self, *args, once: bool = False, **options) -> None:
        logging.getLogger("selcontrol.scheduler").setLevel(logging.INFO)
        beat = InProcessBeat()
        for entry in beat.entries:
            self.stdout.write(f"scheduled: {entry.name} -> {entry.task} ({entry.schedule})")
        if once:
            beat.tick()
            for entry in beat.entries:
                if entry.runs or entry.failures:
                    self.stdout.write(f"ran {entry.task}: {entry.runs} ok, {entry.failures} failed")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        beat.run(stop)
