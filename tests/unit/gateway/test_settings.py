"""Settings come from the environment; a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, env_bool, env_int, env_names, env_url
from tests.support.env import ROOT


def start_django(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env}, capture_output=True, text=True,
    )


@pytest.mark.parametrize(
    "name, value",
    [("DATABASE_URL", "mysql://x@y/z"), ("DATABASE_URL", "postgres://host:notaport/db"), ("DATABASE_URL", "postgres:///db"),
     ("REDIS_URL", "http://localhost"), ("GATEWAY_MAX_BODY_BYTES", "lots"), ("DEBUG", "maybe"),
     ("UPSTREAM_TIMEOUT_SECONDS", "-1"), ("ANTHROPIC_BASE_URL", "ftp://example.com"), ("SIGNUP_CREDIT_USD", "-5"),
     ("SIGNUP_CREDIT_USD", "five"), ("SIGNUP_CREDIT_USD", "0.0000000001"), ("UPSTREAM_RETRIES", "-1"),
     ("LOGIN_ATTEMPTS", "0"), ("ANTHROPIC_BLOCKED_BETAS", "context-1m-2025-08-07,Bad Flag"),
     ("GATEWAY_BODY_TIMEOUT_SECONDS", "0"), ("GATEWAY_BODY_TIMEOUT_SECONDS", "soon"),
     ("GATEWAY_AUTH_FAILURES", "0"), ("GATEWAY_AUTH_FAILURES_WINDOW_SECONDS", "x"), ("GATEWAY_URL_ALLOW_PRIVATE", "perhaps")],
)
def test_bad_environment_value_stops_start_up_naming_the_variable(name, value):
    result = start_django(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_embedded_defaults_use_sqlite():
    result = start_django()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


def test_postgres_url_is_parsed(monkeypatch):
    db = database_from_url("DATABASE_URL", "postgres://user:p%40ss@db.example:6543/gate?sslmode=require")
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == ("gate", "user", "p@ss", "db.example", "6543")
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_sqlite_url_paths():
    assert database_from_url("DATABASE_URL", "sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    assert database_from_url("DATABASE_URL", "sqlite:///var/x.db")["NAME"] == "var/x.db"
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", "postgres://host/")


def test_typed_helpers(monkeypatch):
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_URL", "redis://localhost:6379/0")
    assert env_int("X_INT", 1) == 12 and env_bool("X_BOOL", False) is True
    assert env_url("X_URL", schemes=("redis",)) == "redis://localhost:6379/0"
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be at least 1"):
        env_int("X_INT", 5, minimum=1)


@pytest.mark.parametrize("name", ["PORT", "WEB_CONCURRENCY"])
def test_server_launcher_names_a_bad_variable(name):
    result = subprocess.run([sys.executable, "-m", "gateway.serve"], cwd=ROOT, env={**os.environ, name: "many"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and f"{name} must be a positive integer" in result.stderr


def test_blocked_betas_are_a_validated_set(monkeypatch):
    monkeypatch.setenv("X_BETAS", " context-1m-2025-08-07 ,files-api-2025-04-14,")
    assert env_names("X_BETAS", [], pattern=r"[a-z0-9][a-z0-9.-]*", example="x") == {
        "context-1m-2025-08-07", "files-api-2025-04-14"}
    monkeypatch.setenv("X_BETAS", "context-1m-2025-08-07;files")
    with pytest.raises(ImproperlyConfigured, match="X_BETAS.*context-1m-2025-08-07;files"):
        env_names("X_BETAS", [], pattern=r"[a-z0-9][a-z0-9.-]*", example="x")
