from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from accounts import services as accounts

        from . import services

        accounts.signed_up.connect(services.signup_credit_grant)
