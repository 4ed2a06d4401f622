from django.apps import AppConfig


class ManagementConfig(AppConfig):
    name = "management"
    verbose_name = "Management API"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the OpenAPI description of the credentials
