"""Demo state for the quick start: one user per role and tokens for a local bot.

Idempotent: running it again changes nothing that exists. Passwords come from
SELCONTROL_DEMO_PASSWORD (default "selcontrol-demo"); never run this in production.
"""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from rollout import services
from rollout.models import ApiToken

USERS = [("operator", "operators", True), ("reviewer", "reviewers", False), ("viewer", "viewers", False)]


class Command(BaseCommand):
    help = "Create demo users (operator, reviewer, viewer) for a local control plane."

    def handle(self, *args, **options):
        password = os.environ.get("SELCONTROL_DEMO_PASSWORD", "selcontrol-demo")
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
            path = os.environ.get("SELCONTROL_DEMO_TOKEN_FILE", ".demo-bot-token")
            with open(path, "w") as fh:
                fh.write(raw + "\n")
            self.stdout.write(f"API token demo-bot (config:read, events:write) written to {path}")
