from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from accounts import dashboard
        from accounts import services as accounts

        from . import selectors, services

        accounts.signed_up.connect(services.signup_credit_grant)
        dashboard.key_budget_states.provide(selectors.key_budget_states)
