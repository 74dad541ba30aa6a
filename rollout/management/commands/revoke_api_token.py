from django.core.management.base import BaseCommand, CommandError

from rollout import services
from rollout.models import ApiToken


class Command(BaseCommand):
    help = "Revoke an API token by name; calls with it get 401 from then on."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        token = ApiToken.objects.filter(name=name).first()
        if token is None:
            raise CommandError(f"There is no token named {name!r}.")
        services.revoke_api_token(token, actor=services.Actor("manage.py", via="system"))
        self.stdout.write(f"Revoked {name}.")
