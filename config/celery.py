"""Celery app: Redis as broker; eager in-process execution in the embedded mode (no REDIS_URL)."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _serve_metrics(**_) -> None:
    from gateway.metrics import worker_serve  # Django is set up by now (Celery's Django fixup)

    worker_serve()
