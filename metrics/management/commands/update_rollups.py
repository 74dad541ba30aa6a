"""Recompute dirty hourly rollups without a broker (what the Celery beat entry does)."""

from django.core.management.base import BaseCommand

from metrics import rollups


class Command(BaseCommand):
    help = "Attribute late reactions/follow-ups and recompute dirty hourly rollups (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--all", action="store_true", help="Rebuild every hour, not only dirty ones."
        )
        parser.add_argument("--rollout", default=None, help="With --all: only this rollout.")

    def handle(self, *args, **options):
        if options["all"]:
            n = rollups.mark_all_dirty(options["rollout"])
            self.stdout.write(f"marked {n} hour(s) dirty")
        while True:
            outcome = rollups.catch_up(time_budget=60.0)
            self.stdout.write(
                f"attributed {outcome['attributed']}, recomputed {outcome['recomputed']} hour(s), "
                f"skipped {outcome['skipped']}, {outcome['remaining']} left"
            )
            if not outcome["remaining"] or not outcome["recomputed"]:
                break
