"""The end-to-end tests' processes (the gateway, the fakes, the fault proxy), personas, and requests.

End-to-end tests drive a real ASGI server (the production launcher, `python -m gateway.serve`) that
shares the test database. Fake-upstream directives (`[[fake:...]]`, see fakes/anthropic.py) in the
prompt choose the upstream's behaviour; each test tags its prompt with a unique `marker()` to find its
upstream request in the fake's request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from billing.models import UsageEvent

from .env import ROOT, free_port

E2E_MAX_BODY_BYTES = 1024 * 1024  # small, so the 413 path is cheap to test
# Each test session counts in its own Redis namespace: test databases are recreated, their ids reused.
REDIS_PREFIX = f"gh-test-{os.getpid()}-{int(time.time())}:"
PERSONA_CREDIT_NANO = 1000 * 10**9
HAIKU = "claude-haiku-4-5"


def wait_http(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
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


def stop_process(process: subprocess.Popen) -> None:
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


def fake_server(module: str):
    """Run `python -m <module>` (a fake upstream, request log on) on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_fake/health", process)
    yield url
    stop_process(process)


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


def fault_proxy_process(upstream: str):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fakes.faults", "--upstream", upstream,
                                "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_fault/health", process)
    yield FaultProxy(url)
    stop_process(process)


@dataclass
class Persona:
    tenant: object
    api_key: object
    key: str  # plaintext


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
        wait_http(url + "/health", process)
    except RuntimeError:
        stop_process(process)
        raise
    return url, process


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def upstream_request(fake_upstream: str, tag: str) -> dict:
    """The fake's log entry for the request whose body mentions `tag` (waiting for its outcome)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entries = [e for e in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(e["body"])]
        if entries and entries[-1]["outcome"] != "in_progress":
            return entries[-1]
        time.sleep(0.05)
    raise AssertionError(f"no finished upstream request mentions {tag}")


def upstream_texts(entry: dict) -> list[tuple[str, str]]:
    """(role, text) of each message the upstream received."""
    out = []
    for message in entry["body"]["messages"]:
        content = message["content"]
        text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
        out.append((message["role"], text))
    return out


def usage_row(request_id: str, django_db_blocker, *, timeout: float = 5.0) -> UsageEvent:
    deadline = time.monotonic() + timeout
    with django_db_blocker.unblock():
        while time.monotonic() < deadline:
            row = UsageEvent.objects.filter(request_id=request_id).first()
            if row is not None:
                return row
            time.sleep(0.05)
    raise AssertionError(f"no usage row for {request_id}")


def chat(gateway: str, key: str, **body) -> httpx.Response:
    return httpx.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)


def say(words: int = 5, extra: str = "") -> list[dict]:
    return [{"role": "user", "content": f"[[fake:words={words}{extra}]] {uuid.uuid4().hex}"}]


async def burst(requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Send (base URL, key, body) requests all at once."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
        return await asyncio.gather(*(
            client.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
            for base, key, body in requests))


async def cut_stream(gateway: str, key: str) -> str:
    """Open a long stream, read its first bytes and hang up; returns its request id."""
    body = {"model": HAIKU, "stream": True, "max_tokens": 400, "messages": say(200, ",chunk_delay_ms=20")}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as response:
            async for _ in response.aiter_bytes():
                break
            return response.headers["x-request-id"]
