from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from accounts.services import api_key_issue


class Command(BaseCommand):
    help = "Issue an API key for a tenant. The plaintext key is printed alone on the last line, once."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="Tenant slug")
        parser.add_argument("--name", default="", help="A label for the key")

    def handle(self, *args, tenant, name, **options):
        try:
            owner = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug {tenant!r}.") from None
        try:
            issued = api_key_issue(tenant=owner, name=name)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Issued key {issued.api_key.display} for tenant {owner.slug}. It will not be shown again:")
        self.stdout.write(issued.plaintext)
