"""The emergency rollback from a shell, for when the console cannot be reached.

    manage.py kill_switch prompts_v2 on --reason "v2 crashes in #general" [--by alice]
    manage.py kill_switch prompts_v2 off --percentage 5 --reason "fixed in v2.1" [--by alice]
    manage.py kill_switch prompts_v2 status

It calls the same services as the console's red button and the API, so the change is locked,
revision-bumped and audited like theirs (``via`` = "system", the actor as given by ``--by``,
else the shell's user) and reaches the bot on its next config poll.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from rollout import services
from rollout.models import Rollout


def _shell_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment (some containers)
        return "manage.py"


class Command(BaseCommand):
    help = (
        "Engage (on) or release (off) a rollout's kill switch, or show its state (status). "
        "'on' sends every channel, overrides included, to the control variant."
    )

    def add_arguments(self, parser):
        parser.add_argument("rollout", help="the rollout's key, e.g. prompts_v2")
        parser.add_argument("action", choices=["on", "off", "status"])
        parser.add_argument(
            "--reason", default="", help="kept in the audit log (required for on/off)"
        )
        parser.add_argument(
            "--percentage",
            type=int,
            help=(
                "for 'off': the share of channels on v2 once released (required: say it on purpose)"
            ),
        )
        parser.add_argument("--by", default="", help="who is acting (default: the shell's user)")

    def handle(self, *args, rollout, action, reason, percentage, by, **options):
        current = Rollout.objects.filter(key=rollout).first()
        if current is None:
            known = (
                ", ".join(Rollout.objects.order_by("key").values_list("key", flat=True)) or "none"
            )
            raise CommandError(f"There is no rollout named {rollout!r} (known: {known}).")
        if action == "status":
            self._print_state(current)
            return
        actor = services.Actor(name=(by.strip() or _shell_user())[:150], via="system")
        try:
            if action == "on":
                if percentage is not None:
                    raise CommandError(
                        "--percentage applies to 'off' only: 'on' sends every channel to the "
                        "control."
                    )
                was_enabled = current.enabled
                current = services.engage_kill_switch(current, actor=actor, reason=reason)
                if not was_enabled:
                    self.stdout.write(
                        "The kill switch was already on; nothing changed."
                        if current.current_phase
                        else "The rollout has not started; nothing changed."
                    )
            else:
                if percentage is None:
                    raise CommandError(
                        "Say the percentage to release at, e.g. --percentage 5 "
                        f"(before the rollback it was {current.percentage}%)."
                    )
                current = services.release_kill_switch(
                    current, actor=actor, reason=reason, percentage=percentage
                )
        except services.ServiceError as e:
            raise CommandError(str(e)) from None
        self._print_state(current)

    def _print_state(self, rollout: Rollout) -> None:
        if rollout.enabled:
            state = (
                f"live: {rollout.percentage}% of channels on v2 ({rollout.treatment_variant}"
                f"/{rollout.simplified_variant}), the rest on {rollout.control_variant}"
            )
        elif rollout.current_phase:
            state = f"KILL SWITCH ON: every channel on {rollout.control_variant}"
        else:
            state = f"not started: every channel on {rollout.control_variant}"
        self.stdout.write(f"{rollout.key}: {state} (config revision {rollout.revision}).")
