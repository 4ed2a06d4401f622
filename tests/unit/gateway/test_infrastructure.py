"""docker-compose.yml matches what the project provides; the operator's console works; /health is honest."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from asgiref.sync import async_to_sync
from django.test import RequestFactory, override_settings

from accounts.models import ApiKey, Tenant
from accounts.services import api_key_issue, tenant_create
from tests.support.env import ROOT, requires_redis
from tests.support.rows import catalog_form

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services():
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(COMPOSE["services"])


@pytest.mark.parametrize("service", ["web", "worker", "beat"])
def test_compose_app_services_use_settings_the_project_reads(service):
    env = COMPOSE["services"][service]["environment"]
    settings_source = (ROOT / "config" / "settings.py").read_text() + (ROOT / "gateway" / "serve.py").read_text()
    for name in env:
        assert re.search(rf'"{name}"', settings_source), f"{service} sets {name}, which nothing reads"
    assert env["DATABASE_URL"].startswith("postgres://gatehouse:gatehouse@postgres:5432/gatehouse")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    postgres = COMPOSE["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == ("gatehouse",) * 3


def test_compose_commands_name_real_entry_points():
    web = COMPOSE["services"]["web"]["command"]
    assert "python manage.py migrate" in web and "python -m gateway.serve" in web
    assert (ROOT / "gateway" / "serve.py").exists()
    for service in ("worker", "beat"):
        command = COMPOSE["services"][service]["command"]
        assert command.startswith(f"celery -A config {service}")
    from config.celery import app

    assert app.main == "gatehouse"


def test_compose_image_installs_the_project():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "COPY . ." in dockerfile
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package in ("django", "django-ninja", "anthropic", "celery", "psycopg", "redis", "granian", "channels", "daphne"):
        assert any(dep.startswith(package) for dep in dependencies), package


def test_readme_has_exactly_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Set-up on a fresh machine", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["scripts/serve", "scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


@pytest.mark.django_db
def test_health_is_503_when_redis_is_down():
    from gateway.api.ops import health

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = async_to_sync(health)(RequestFactory().get("/health"))
    assert response.status_code == 503
    assert b'"redis":"down"' in response.content


@requires_redis
@pytest.mark.django_db
def test_health_checks_the_configured_redis():
    from gateway.api.ops import health

    response = async_to_sync(health)(RequestFactory().get("/health"))
    assert response.status_code == 200
    assert b'"redis":"ok"' in response.content


@pytest.mark.django_db
def test_admin_suspends_tenants_and_revokes_keys(admin_client):
    tenant = tenant_create(slug="adminco")
    issued = api_key_issue(tenant=tenant)
    reason = {"apply": "Suspend", "reason": "infrastructure test"}
    response = admin_client.post("/admin/accounts/tenant/", {"action": "suspend", "_selected_action": [tenant.pk],
                                                             **reason})
    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.SUSPENDED
    admin_client.post("/admin/accounts/tenant/", {"action": "resume", "_selected_action": [tenant.pk], **reason})
    assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.ACTIVE

    admin_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]})
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
    page = admin_client.get(f"/admin/accounts/apikey/{issued.api_key.pk}/change/").content.decode()
    assert issued.plaintext not in page and issued.api_key.secret_digest not in page


@pytest.mark.django_db
def test_admin_edits_the_catalog_and_rejects_alias_clashes(admin_client):
    from gateway.models import CatalogModel, ModelAlias

    sonnet = CatalogModel.objects.get(name="claude-sonnet-4-6")
    data = catalog_form(sonnet, default_max_tokens=2048, **{"aliases-TOTAL_FORMS": 1, "aliases-0-name": "gpt-4o-2024"})
    response = admin_client.post(f"/admin/gateway/catalogmodel/{sonnet.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    sonnet.refresh_from_db()
    assert sonnet.default_max_tokens == 2048
    assert ModelAlias.objects.get(name="gpt-4o-2024").model == sonnet

    clash = {**data, "aliases-0-name": "claude-opus-4-6"}
    response = admin_client.post(f"/admin/gateway/catalogmodel/{sonnet.pk}/change/", clash)
    assert response.status_code == 200 and "already the id of a catalog model" in response.content.decode()


@pytest.mark.django_db
def test_admin_refuses_a_provider_kind_that_does_not_exist(admin_client):
    from gateway.models import Provider

    response = admin_client.post("/admin/gateway/provider/add/", {
        "name": "typo", "kind": "anthropicc", "cooldown_seconds": 30, "enabled": "on",
        "credentials-TOTAL_FORMS": 0, "credentials-INITIAL_FORMS": 0})
    assert response.status_code == 200 and "not one of the available choices" in response.content.decode()
    assert not Provider.objects.filter(name="typo").exists()


@pytest.mark.django_db
def test_admin_credentials_are_write_only_and_encrypted(admin_client):
    from accounts.models import AuditEntry
    from common import crypto
    from gateway.models import Credential, Provider

    form = {"name": "deepseek", "kind": "openai", "base_url": "https://api.deepseek.com/v1", "cooldown_seconds": 30,
            "enabled": "on", "credentials-TOTAL_FORMS": 1, "credentials-INITIAL_FORMS": 0,
            "credentials-0-name": "main", "credentials-0-secret": "sk-deepseek-secret-9876", "credentials-0-weight": 2,
            "credentials-0-enabled": "on"}
    response = admin_client.post("/admin/gateway/provider/add/", form)
    assert response.status_code == 302, response.content[:3000]
    provider = Provider.objects.get(name="deepseek")
    credential = Credential.objects.get(provider=provider)
    assert crypto.decrypt(credential.secret_encrypted) == "sk-deepseek-secret-9876" and credential.hint == "9876"
    assert "sk-deepseek-secret-9876" not in credential.secret_encrypted
    page = admin_client.get(f"/admin/gateway/provider/{provider.pk}/change/").content.decode()
    assert "sk-deepseek-secret-9876" not in page and "9876" in page
    audit = AuditEntry.objects.get(action="credential.create")
    assert "sk-deepseek" not in str(audit.details)

    # Saving again with the key field empty keeps the key; a new credential without one is refused.
    edit = {**form, "credentials-INITIAL_FORMS": 1, "credentials-0-id": credential.pk, "credentials-0-secret": "",
            "credentials-0-weight": 5, "credentials-0-provider": provider.pk}
    assert admin_client.post(f"/admin/gateway/provider/{provider.pk}/change/", edit).status_code == 302
    credential.refresh_from_db()
    assert credential.weight == 5 and crypto.decrypt(credential.secret_encrypted) == "sk-deepseek-secret-9876"
    missing = {**form, "name": "other", "credentials-0-secret": ""}
    response = admin_client.post("/admin/gateway/provider/add/", missing)
    assert response.status_code == 200 and "needs its API key" in response.content.decode()
