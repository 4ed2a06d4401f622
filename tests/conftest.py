"""Shared fixtures: the fake upstream and the real gateway as processes, and tenant personas.

End-to-end tests drive a real ASGI server (the production launcher, `python -m gateway.serve`) that
shares the test database, with the official SDKs as clients. Data they need is created once per
session outside any test transaction, so the server process sees it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
E2E_MAX_BODY_BYTES = 1024 * 1024  # small, so the 413 path is cheap to test
# Each test session counts in its own Redis namespace: test databases are recreated, their ids reused.
REDIS_PREFIX = f"gh-test-{os.getpid()}-{int(time.time())}:"
PERSONA_CREDIT_NANO = 1000 * 10**9

requires_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs PostgreSQL: set DATABASE_URL")
requires_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    # Server processes start in a session of their own: a granian worker left behind by a killed
    # master would hold the SQLite test database (and a port) for the rest of the run.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def database_url_for_current_connection() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_keepdb):
    """Always create the test database, even when only end-to-end tests run.

    pytest-django creates it only for tests marked django_db, but end-to-end tests must run outside a
    test transaction (the server process sees only committed rows, and SQLite's write lock would shut
    it out), so they are not marked.
    """
    from django.test.utils import setup_databases, teardown_databases

    (ROOT / "var").mkdir(exist_ok=True)  # the SQLite test database's home, absent in a fresh clone
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, keepdb=django_db_keepdb, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0, keepdb=django_db_keepdb)


def _fake_server(module: str):
    """Run `python -m <module>` (a fake upstream, request log on) on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/_fake/health", process)
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def fake_upstream():
    """Base URL of a fake Anthropic server process."""
    yield from _fake_server("fakes.anthropic")


@pytest.fixture(scope="session")
def fake_openai_upstream():
    """Base URL (without /v1) of a fake OpenAI-compatible server process."""
    yield from _fake_server("fakes.openai_compat")


@pytest.fixture(scope="session")
def fake_stripe():
    """Base URL of a fake Stripe server process (fakes/stripe.py); webhooks go where a test says."""
    yield from _fake_server("fakes.stripe")


@dataclass
class FaultProxy:
    """A running `fakes.faults` proxy: its base URL and its control route."""

    url: str

    def set(self, mode: str, **params: int) -> dict:
        """Switch the proxy to `mode` (see fakes/faults.py for the modes and their parameters)."""
        response = httpx.put(f"{self.url}/_fault", json={"mode": mode, **params})
        response.raise_for_status()
        return response.json()

    def state(self) -> dict:
        return httpx.get(f"{self.url}/_fault").json()

    def requests(self, since: int = 0) -> list[dict]:
        return httpx.get(f"{self.url}/_fault/requests", params={"since": since}).json()

    def reset(self) -> None:
        self.set("pass")
        httpx.delete(f"{self.url}/_fault/requests").raise_for_status()


def _fault_proxy_process(upstream: str):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fakes.faults", "--upstream", upstream,
                                "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/_fault/health", process)
    yield FaultProxy(url)
    _stop(process)


@pytest.fixture(scope="session")
def _fault_proxy_session(fake_upstream):
    yield from _fault_proxy_process(fake_upstream)


@pytest.fixture(scope="session")
def _fault_openai_proxy_session(fake_openai_upstream):
    yield from _fault_proxy_process(fake_openai_upstream)


@pytest.fixture
def fault_proxy(_fault_proxy_session) -> FaultProxy:
    """A fault-injection proxy in front of the fake Anthropic server, in `pass` mode with an empty log."""
    _fault_proxy_session.reset()
    yield _fault_proxy_session
    _fault_proxy_session.set("pass")


@pytest.fixture
def fault_openai_proxy(_fault_openai_proxy_session) -> FaultProxy:
    """A fault-injection proxy in front of the fake OpenAI-compatible server, in `pass` mode with an empty log."""
    _fault_openai_proxy_session.reset()
    yield _fault_openai_proxy_session
    _fault_openai_proxy_session.set("pass")


@dataclass
class Persona:
    tenant: object
    api_key: object
    key: str  # plaintext


@pytest.fixture(scope="session", autouse=True)
def _redis_namespace():
    settings.GATEWAY_REDIS_PREFIX = REDIS_PREFIX


def make_persona(slug: str, *, credit_nano: int = PERSONA_CREDIT_NANO, **key_settings) -> Persona:
    """A key of tenant `slug` (created with `credit_nano` of prepaid credit if it doesn't exist)."""
    from accounts.models import Tenant
    from accounts.services import api_key_issue, tenant_create
    from billing.services import credit_grant

    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        tenant = tenant_create(slug=slug, name=slug.title())
        if credit_nano:
            credit_grant(tenant=tenant, amount_nano=credit_nano, reason="test persona")
    issued = api_key_issue(tenant=tenant, name=f"{slug} key", **key_settings)
    return Persona(tenant=tenant, api_key=issued.api_key, key=issued.plaintext)


@pytest.fixture
def persona(django_db_setup, django_db_blocker) -> Persona:
    """A key of a tenant of its own, made for this test (committed, so server processes see it)."""
    import uuid

    with django_db_blocker.unblock():
        return make_persona(f"p-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def personas(django_db_setup, django_db_blocker):
    """alice and bob are customers of different tenants; created once, committed, visible to servers."""
    with django_db_blocker.unblock():
        return {"alice": make_persona("acme"), "bob": make_persona("globex")}


def start_gateway(db_url: str, upstream: str, *, log: Path | None = None, **extra_env: str) -> tuple[str, subprocess.Popen]:
    """A gateway process (the production launcher) on the test database; returns (base URL, process).

    `log`: a file for its output (stdout and stderr), instead of the test's."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "ANTHROPIC_BASE_URL": upstream,
           "ANTHROPIC_API_KEY": "test-upstream-key", "DJANGO_SETTINGS_MODULE": "config.settings",
           "GATEWAY_MAX_BODY_BYTES": str(E2E_MAX_BODY_BYTES), "GATEWAY_REDIS_PREFIX": REDIS_PREFIX,
           # Every test calls from 127.0.0.1, many with bad keys on purpose: no per-address throttle unless asked.
           "GATEWAY_AUTH_FAILURES": "1000000", **extra_env}
    output = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child keeps its own copy
    process = subprocess.Popen([sys.executable, "-m", "gateway.serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT if output else None,
                               start_new_session=True)
    if output is not None:
        output.close()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/health", process)
    except RuntimeError:
        _stop(process)
        raise
    return url, process


@pytest.fixture(scope="session")
def gateway_db_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return database_url_for_current_connection()


@pytest.fixture(scope="session")
def gateway(gateway_db_url, fake_upstream):
    """Base URL of the gateway served by the production launcher against the test database."""
    url, process = start_gateway(gateway_db_url, fake_upstream)
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def second_gateway(gateway_db_url, fake_upstream):
    """Another gateway process on the same database and Redis, as in a deployment with several."""
    url, process = start_gateway(gateway_db_url, fake_upstream)
    yield url
    _stop(process)


@pytest.fixture
def db_access(django_db_blocker):
    """Read what the server processes committed, outside a test transaction."""
    with django_db_blocker.unblock():
        yield
