from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import operator_token_issue


class Command(BaseCommand):
    help = ("Issue an operator token for the management API (/api/v1/). The plaintext token is printed alone "
            "on the last line, once.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the token is for, e.g. 'terraform' or 'billing export'")
        parser.add_argument("--read-only", action="store_true", help="GET requests only")
        parser.add_argument("--user", default="", help="Username named as the actor of the token's writes in the "
                                                       "audit log (default: none)")

    def handle(self, *args, name, read_only, user, **options):
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"--user: no user {user!r}.")
        try:
            issued = operator_token_issue(name=name, read_only=read_only, user=actor, via="command")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        token = issued.credential
        self.stdout.write(f"Issued {'read-only ' if read_only else ''}operator token {token.display} ({token.name}). "
                          "It will not be shown again:")
        self.stdout.write(issued.plaintext)
