"""Demo state for the quick start: users of every role (three reviewers) and a local bot's token.

Idempotent: running it again changes nothing that exists. Passwords come from
SELCONTROL_DEMO_PASSWORD (default "selcontrol-demo"); never run this in production.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from rollout import services
from rollout.models import ApiToken

USERS = [
    ("operator", "operators", True),
    ("reviewer", "reviewers", False),
    # two more reviewers: the demo's review sample is partly graded by them, twice where it is
    # double graded, so the agreement (kappa) has pairs to show (metrics/reviews/demo.py)
    ("reviewer2", "reviewers", False),
    ("reviewer3", "reviewers", False),
    ("viewer", "viewers", False),
]


class Command(BaseCommand):
    help = "Create demo users (operator, reviewer, reviewer2, reviewer3, viewer) and a bot token."

    def handle(self, *args, **options):
        password = settings.SELCONTROL_DEMO_PASSWORD
        User = get_user_model()
        for username, group, staff in USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = staff
                user.is_superuser = False
                user.save()
                user.groups.add(Group.objects.get(name=group))
                self.stdout.write(f"user {username} / {password} ({group})")
        if not ApiToken.objects.filter(name="demo-bot").exists():
            _, raw = services.create_api_token(
                name="demo-bot",
                scopes=["config:read", "events:write"],
                actor=services.Actor("seed_demo", via="system"),
            )
            path = settings.SELCONTROL_DEMO_TOKEN_FILE
            with open(path, "w") as fh:
                fh.write(raw + "\n")
            self.stdout.write(f"API token demo-bot (config:read, events:write) written to {path}")
