"""The worker's and beat's heartbeats from the shell: the containers' health checks.

manage.py heartbeat show            # both, with their age
manage.py heartbeat check worker    # exit 0 while the worker works, 1 with a sentence if not
"""

from django.core.management.base import BaseCommand, CommandError

from selcontrol import heartbeat


class Command(BaseCommand):
    help = "Show the Celery worker's and beat's heartbeats, or check one (exit 1 when stale)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["show", "check"])
        parser.add_argument("process", nargs="?", choices=heartbeat.PROCESSES)

    def handle(self, *args, **options):
        found = heartbeat.status()
        if options["action"] == "show":
            for name, beat in found.items():
                self.stdout.write(f"{name}: {beat.describe()}")
            return
        if not options["process"]:
            raise CommandError("Say which process to check: worker or beat.")
        beat = found[options["process"]]
        if beat.stale:
            raise CommandError(beat.describe())
        self.stdout.write(f"{beat.process}: {beat.describe()}")
