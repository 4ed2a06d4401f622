"""Celery app: Redis as broker; eager in-process execution in the embedded mode (no REDIS_URL)."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _batch_schedule(sender, **_) -> None:
    from django.conf import settings

    # A new dict: CELERY_BEAT_SCHEDULE itself is the billing schedule the embedded scheduler runs.
    sender.conf.beat_schedule = {**sender.conf.beat_schedule, **settings.BATCH_BEAT_SCHEDULE}


@worker_init.connect
def _serve_metrics(**_) -> None:
    from gateway.metrics import worker_serve  # Django is set up by now (Celery's Django fixup)

    worker_serve()
