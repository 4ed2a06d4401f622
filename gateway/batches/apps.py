from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "gateway.batches"
    label = "batches"
