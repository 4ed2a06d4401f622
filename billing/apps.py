from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from accounts import dashboard
        from accounts import services as accounts

        from . import selectors, services

        accounts.signed_up.connect(services.signup_credit_grant)
        dashboard.key_budget_states.provide(selectors.key_budget_states)
        post_migrate.connect(_usage_partitions_ahead, sender=self)


def _usage_partitions_ahead(using: str = "default", **kwargs) -> None:
    # At every migrate, so a database that has not run the maintenance task for a while (or ever) has
    # its months ready before the first row of a new month arrives.
    from .services import usage_partitions_ensure

    usage_partitions_ensure(using=using)
