from accounts.models import Tenant

from .suspend_tenant import Command as SuspendTenantCommand


class Command(SuspendTenantCommand):
    help = "Resume a suspended tenant: its keys work again within GATEWAY_AUTH_CACHE_SECONDS."
    status = Tenant.Status.ACTIVE
