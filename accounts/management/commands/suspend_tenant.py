from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from accounts.services import tenant_set_status


class Command(BaseCommand):
    help = "Suspend a tenant: its keys stop working within GATEWAY_AUTH_CACHE_SECONDS."
    status = Tenant.Status.SUSPENDED

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="Tenant slug")

    def handle(self, *args, tenant, **options):
        target = Tenant.objects.filter(slug=tenant).first()
        if target is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        # Scripts re-run: asking for the state a tenant is already in succeeds without an audit row.
        if target.status == self.status:
            self.stdout.write(f"Tenant {target.slug} is already {self.status}.")
            return
        tenant_set_status(tenant=target, status=self.status, via="command")
        self.stdout.write(f"Tenant {target.slug} is now {self.status}.")
