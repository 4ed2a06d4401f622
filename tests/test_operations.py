"""The operations surface: health endpoints, structured access logs, traces, graceful shutdown, Kubernetes."""

from __future__ import annotations

import pytest
from django.db.migrations.recorder import MigrationRecorder

from gateway import views


def test_health_live_answers_without_touching_the_database(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_health_ready_checks_database_migrations_and_spool(client, settings):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"] == body["checks"]["migrations"] == "ok"
    assert ("redis" in body["checks"]) == bool(settings.REDIS_URL)
    assert body["usage_spool"]["depth"] <= body["usage_spool"]["max"]


@pytest.mark.django_db
def test_health_ready_is_unavailable_while_a_migration_is_unapplied(client, monkeypatch):
    monkeypatch.setattr(views, "_migrations_applied", False)
    last = MigrationRecorder.Migration.objects.filter(app="billing").order_by("-id").first()
    last.delete()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "down"
    assert client.get("/health").status_code == 200  # /health is as before: no migrations check


@pytest.mark.django_db
def test_health_ready_is_unavailable_when_the_spool_overflows(client, settings):
    settings.GATEWAY_USAGE_SPOOL_MAX = 1
    from billing import spool

    depth = spool.depth
    try:
        spool.depth = lambda: 2
        response = client.get("/health/ready")
    finally:
        spool.depth = depth
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
