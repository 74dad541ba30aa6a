"""Evaluate every guardrail rule now (what the Celery beat entry does every minute).

    python manage.py evaluate_guardrails [--rollout KEY] [--loop SECONDS]

Prints one line per rule: rollout, rule, status, the numbers in words and any action taken.
With --loop it runs every SECONDS until interrupted (a broker-less deployment's watcher).
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from metrics.guardrails import services as guardrail_services
from metrics.guardrails.alerts import resend_stale_alerts
from rollout.models import Rollout


class Command(BaseCommand):
    help = "Evaluate the guardrail rules (rollback triggers) of every rollout, or of one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rollout", help="Only this rollout's rules (its key).")
        parser.add_argument("--loop", type=float, default=0, help="Repeat every N seconds.")

    def handle(self, *args, rollout: str | None = None, loop: float = 0, **options) -> None:
        while True:
            if rollout:
                target = Rollout.objects.filter(key=rollout).first()
                if target is None:
                    raise CommandError(f"There is no rollout named {rollout!r}.")
                results = {target.key: guardrail_services.evaluate_rollout(target)}
            else:
                results = guardrail_services.evaluate_all()
            for key, outcomes in results.items():
                for o in outcomes:
                    line = f"{key} {o.rule}: {o.status} - {o.summary}"
                    if o.action:
                        line += f" [action: {o.action}]"
                    self.stdout.write(line)
            resend_stale_alerts()
            if not loop:
                return
            time.sleep(loop)
