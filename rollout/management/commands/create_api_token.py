"""Create an API token:

    python manage.py create_api_token NAME --scope config:read --scope events:write

Prints the new token alone on its last line (it is shown once; only its hash is stored).
"""

from django.core.management.base import BaseCommand, CommandError

from rollout import services
from rollout.models import ApiToken


class Command(BaseCommand):
    help = "Create a scoped API token for the bot or chat-ops; prints the token on its last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="A name to recognise the token by, e.g. sel-bot-prod")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=ApiToken.Scope.values,
            required=True,
            help="Repeat for several scopes.",
        )

    def handle(self, *args, name, scopes, **options):
        try:
            token, raw = services.create_api_token(
                name=name, scopes=scopes, actor=services.Actor("manage.py", via="system")
            )
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created token {token.name!r} with scopes {', '.join(token.scopes)}.")
        self.stderr.write("Store it now: it is not shown again.")
        self.stdout.write(raw)
