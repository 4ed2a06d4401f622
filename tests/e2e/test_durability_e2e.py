"""Nothing lost, nobody harmed by someone else, end to end: a tenant's NUL never costs others their turns,
and a PostgreSQL outage under load degrades (cached keys keep working, usage waits in the spool) instead
of failing every request and losing billed usage.

The outage tests start a PostgreSQL cluster of their own (initdb under a temporary directory, as the
`postgres` user) on a free port and stop it with `pg_ctl stop -m immediate`: the machine's shared
PostgreSQL is never touched.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.e2e import fake_server, marker, start_gateway, stop_process, upstream_request
from tests.support.env import ROOT, free_port, requires_postgres, requires_redis


pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"
CLIENTS = 16


# --- NUL --------------------------------------------------------------------------------------------------


def test_a_tenants_nul_never_costs_other_tenants_their_turns(gateway, fake_upstream, persona, personas, db_access):
    """NUL is stored (and sent upstream) as U+FFFD, the same in chat, Responses and the Conversations API."""
    from conversations.models import Conversation, Message, StoredResponse

    hostile, innocent = persona, personas["bob"]
    tag = marker()

    async def turns():
        async with httpx.AsyncClient(base_url=f"{gateway}/v1", timeout=30) as client:
            def chat(key, text, **extra):
                return client.post("/chat/completions", headers={"authorization": f"Bearer {key}"},
                                   json={"model": HAIKU, "messages": [{"role": "user", "content": text}], **extra})
            # Many in flight at once, so the hostile turns share batches with the innocent ones.
            return await asyncio.gather(*[chat(hostile.key, f"evil\u0000 {tag} {n}") for n in range(5)],
                                        *[chat(innocent.key, f"innocent {n}") for n in range(40)])

    answers = asyncio.run(turns())
    assert [answer.status_code for answer in answers] == [200] * 45
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=innocent.key, max_retries=0)
    for answer in answers[5:]:  # every innocent turn continues
        client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "and then?"}],
                                       extra_body={"conversation_id": answer.json()["conversation_id"]})
    stored = Message.objects.get(conversation_id=answers[0].json()["conversation_id"], seq=0)
    assert stored.content[0]["text"] == f"evil\ufffd {tag} 0"
    assert "evil\ufffd" in last_user_text(upstream_request(fake_upstream, tag))  # the upstream saw what we store

    hostile_client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=hostile.key, max_retries=0)
    response = hostile_client.responses.create(model=HAIKU, input="nul\u0000 in a response")
    assert hostile_client.responses.retrieve(response.id).id == response.id
    assert "nul\ufffd in a response" in str(StoredResponse.objects.get(pk=response.id).input_items)

    created = httpx.post(f"{gateway}/v1/conversations", headers={"authorization": f"Bearer {hostile.key}"},
                         json={"metadata": {"k\u0000": "v\u0000"},
                               "items": [{"type": "message", "role": "user", "content": "x\u0000y"}]})
    assert created.status_code == 200, created.text
    assert created.json()["metadata"] == {"k\ufffd": "v\ufffd"}
    conversation = Conversation.objects.get(pk=created.json()["id"])
    assert conversation.metadata == {"k\ufffd": "v\ufffd"}
    assert Message.objects.get(conversation=conversation).content == [{"type": "text", "text": "x\ufffdy"}]


# --- A PostgreSQL of our own, stopped under load -------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or name]
    return found[-1]


class Cluster:
    """A throwaway PostgreSQL cluster run by the `postgres` user (the tests run as root)."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/gatehouse"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["su", "postgres", "-c", shlex.join(argv)], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._as_postgres(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "gatehouse")

    def start(self) -> None:
        # fsync off: the machine does not crash in this test, an immediate stop does (WAL replay covers it).
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"), "-o", options,
                          "-w", "start")

    def stop(self) -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


def _manage(db_url: str, *argv: str) -> str:
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": ""}
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                          timeout=300).stdout


_SEED = """
import django, json, uuid
django.setup()
from accounts.services import api_key_issue, tenant_create
from billing.services import credit_grant
tenant = tenant_create(slug="outage-" + uuid.uuid4().hex[:8], name="Outage")
credit_grant(tenant=tenant, amount_nano=10**12, reason="test")
print(json.dumps({"tenant": tenant.pk, "hot": api_key_issue(tenant=tenant, name="hot").plaintext,
                  "cold": api_key_issue(tenant=tenant, name="cold").plaintext}))
"""


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("su") is None:
        pytest.skip("needs root to run a PostgreSQL cluster as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="gh-durable-pg-"))
    shutil.chown(root, "postgres")
    instance = Cluster(root)
    instance.init()
    _manage(instance.url, "manage.py", "migrate", "--no-input")
    yield instance
    try:
        instance.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def outage_upstream():
    """A fake upstream of this module's own, so its request log holds only these tests' requests."""
    yield from fake_server("fakes.anthropic")


def seed(cluster: Cluster) -> dict:
    return json.loads(_manage(cluster.url, "-c", _SEED).strip().splitlines()[-1])


def usage_rows(cluster: Cluster, tenant_id: int) -> list[str]:
    import psycopg

    with psycopg.connect(cluster.url) as connection:
        return [row[0] for row in connection.execute(
            "SELECT request_id FROM billing_usageevent WHERE tenant_id = %s", [tenant_id])]


@dataclass
class Outcome:
    phase: str
    kind: str  # new (a new conversation), continue (needs the database), cold (an uncached key), usage
    status: int
    tag: str = ""
    request_id: str = ""
    retry_after: str | None = None
    code: str | None = None
    conversation_id: str | None = None


@dataclass
class Load:
    gateway: str
    hot: str
    cold: str
    phase: str = "before"
    settled: bool = False  # conversations begun from now on may be spooled: not continued in the outage
    outcomes: list[Outcome] = field(default_factory=list)
    conversations: dict[int, list[str]] = field(default_factory=dict)  # per client, so never two turns at once
    health: list[tuple[float, str, int]] = field(default_factory=list)  # (t, phase, spool depth)

    async def _call(self, client: httpx.AsyncClient, kind: str, key: str, n: int) -> None:
        phase, tag = self.phase, marker()
        headers = {"authorization": f"Bearer {key}"}
        if kind == "usage":
            response = await client.get("/v1/usage", headers=headers)
        else:
            body = {"model": HAIKU, "max_tokens": 16, "messages": [{"role": "user", "content": f"hi {tag}"}]}
            if kind == "continue":
                mine = self.conversations[n // 1000]
                body["conversation_id"] = mine[n % len(mine)]
            response = await client.post("/v1/chat/completions", headers=headers, json=body)
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        self.outcomes.append(Outcome(
            phase=phase, kind=kind, status=response.status_code, tag=tag, request_id=response.headers.get("request-id", ""),
            retry_after=response.headers.get("retry-after"), code=(error or {}).get("code"),
            conversation_id=payload.get("conversation_id") if response.status_code == 200 else None))
        if kind == "new" and response.status_code == 200 and not self.settled:
            self.conversations.setdefault(n // 1000, []).append(payload["conversation_id"])

    async def client(self, number: int, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=60) as client:
            n = 0
            while not stop.is_set():
                n += 1
                kind = "continue" if n % 5 == 0 and self.conversations.get(number) else "new"
                await self._call(client, kind, self.hot, number * 1000 + n)
                await asyncio.sleep(0.02)  # the machine is shared: load, not a flood

    async def probe(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=10) as client:
            while not stop.is_set():
                with_payload = await client.get("/health")
                self.health.append((time.monotonic(), self.phase, with_payload.json()["usage_spool"]["depth"]))
                await asyncio.sleep(0.25)


async def collect_upstream(fake: str, stop: asyncio.Event, entries: dict[int, dict]) -> None:
    """Every request the fake saw (its log keeps only the last 1000, so read it as it grows)."""
    async with httpx.AsyncClient(timeout=10) as client:
        since = max([e["seq"] for e in (await client.get(f"{fake}/_fake/requests")).json()] or [0])
        while True:
            for entry in (await client.get(f"{fake}/_fake/requests", params={"since": since})).json():
                entries[entry["seq"]] = entry
            running = [seq for seq, entry in entries.items() if entry["outcome"] == "in_progress"]
            since = min(running) - 1 if running else max(entries, default=since)
            if stop.is_set() and not running:
                return
            await asyncio.sleep(0.3)


def last_user_text(entry: dict) -> str:
    content = entry["body"]["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(block.get("text", "") for block in content)


async def drive(load: Load, cluster: Cluster, fake: str, *, before: float, outage: float, after: float) -> dict:
    stop, stop_upstream = asyncio.Event(), asyncio.Event()
    entries: dict[int, dict] = {}
    collector = asyncio.create_task(collect_upstream(fake, stop_upstream, entries))
    tasks = [asyncio.create_task(load.client(n, stop)) for n in range(CLIENTS)] + [asyncio.create_task(load.probe(stop))]
    deadline = time.monotonic() + 60
    while len(load.conversations) < CLIENTS and time.monotonic() < deadline:  # each client has one to continue
        await asyncio.sleep(0.1)
    await asyncio.sleep(before - 1)
    load.settled = True
    await asyncio.sleep(1)
    await asyncio.to_thread(cluster.stop)
    load.phase = "outage"
    stopped_at = time.monotonic()
    await asyncio.sleep(outage / 2)
    async with httpx.AsyncClient(base_url=load.gateway, timeout=10) as client:  # what needs the database
        await load._call(client, "cold", load.cold, -1)
        await load._call(client, "usage", load.hot, -1)
    await asyncio.sleep(outage / 2)
    load.phase = "restarting"  # up at some point during pg_ctl start
    await asyncio.to_thread(cluster.start)
    load.phase = "after"
    restarted_at = time.monotonic()
    await asyncio.sleep(after)
    stop.set()
    await asyncio.gather(*tasks)
    async with httpx.AsyncClient(base_url=load.gateway, timeout=10) as client:
        deadline = time.monotonic() + 60
        while (depth := (await client.get("/health")).json()["usage_spool"]["depth"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            load.health.append((time.monotonic(), "after", depth))
    drained = [t for t, phase, depth in load.health if phase == "after" and depth == 0]
    stop_upstream.set()
    await collector
    return {"entries": entries, "depth_left": depth, "outage_seconds": restarted_at - stopped_at,
            "drain_seconds": (min(drained) - restarted_at) if drained else None,
            "max_depth": max([d for _, _, d in load.health] or [0])}


def check_outage(cluster: Cluster, load: Load, result: dict, log: Path, tenant_id: int) -> dict:
    by_tag = {outcome.tag: outcome for outcome in load.outcomes}
    completed = [entry for entry in result["entries"].values() if entry["outcome"] == "completed"]
    answered = [by_tag[tag] for entry in completed if (tag := last_user_text(entry).removeprefix("hi ")) in by_tag]
    rows = usage_rows(cluster, tenant_id)
    during = [outcome for outcome in load.outcomes if outcome.phase == "outage"]
    # A load balancer's health checks are logged as Django logs any 503; the API's 503s are not.
    lines = [line for line in log.read_text(errors="replace").splitlines() if "Unavailable: /health" not in line]
    figures = {
        "requests": len(load.outcomes), "upstream_completed": len(completed), "usage_rows": len(rows),
        "max_spool_depth": result["max_depth"], "outage_seconds": round(result["outage_seconds"], 1),
        "drain_seconds": result["drain_seconds"] and round(result["drain_seconds"], 1),
        "statuses": {f"{phase} {kind} {status}": sum((o.phase, o.kind, o.status) == (phase, kind, status)
                                                     for o in load.outcomes)
                     for phase, kind, status in sorted({(o.phase, o.kind, o.status) for o in load.outcomes})},
        "missing": {phase: sum(o.phase == phase and o.request_id not in set(rows) for o in answered)
                    for phase in ("before", "outage", "restarting", "after")},
        "log_lines": len(lines), "log_tracebacks": sum("Traceback" in line for line in lines),
        "log_database_unavailable_lines": sum("database unavailable" in line for line in lines),
    }
    print("outage figures:", json.dumps(figures))

    # Nothing the upstream answered is lost, nothing is billed twice.
    assert len(answered) == len(completed)  # every upstream call is one of this test's requests
    assert result["depth_left"] == 0
    assert len(rows) == len(set(rows)) == len(completed)
    assert {outcome.request_id for outcome in answered} == set(rows)

    # Clients saw 200 where a cached key sufficed, 503 with retry-after where the database was needed (and
    # 409 conversation_busy for a conversation whose last turn, answered as the database went away, is
    # still waiting in the spool: its lease is held until it is written).
    for outcome in load.outcomes:
        assert outcome.status in (200, 503) or (outcome.kind, outcome.status) == ("continue", 409), outcome
        if outcome.status == 503:
            assert (outcome.code, outcome.retry_after) == ("database_unavailable", "5")
    assert any(o.kind == "new" and o.status == 200 for o in during)
    assert {(o.kind, o.status) for o in during if o.kind in ("cold", "usage")} == {("cold", 503), ("usage", 503)}
    # (A continuation may also be a 200: queued behind the process's database thread until the restart.)
    assert 503 in {o.status for o in during if o.kind == "continue"}

    # A conversation begun during the outage continues once its spooled turn is replayed.
    begun = next(o.conversation_id for o in during if o.kind == "new" and o.status == 200)
    again = httpx.post(f"{load.gateway}/v1/chat/completions", headers={"authorization": f"Bearer {load.hot}"},
                       json={"model": HAIKU, "conversation_id": begun, "messages": [{"role": "user", "content": "on"}]},
                       timeout=30)
    assert again.status_code == 200, again.text

    # One line per failure class and interval, not a traceback per request.
    assert figures["log_tracebacks"] == 0, "\n".join(lines[-80:])
    assert len(lines) < 60, "\n".join(lines[-80:])
    return figures


@requires_postgres
@pytest.mark.parametrize("spool", ["file", pytest.param("redis", marks=requires_redis)])
def test_a_database_outage_under_load_loses_no_usage_and_fails_only_what_needs_the_database(
        cluster, outage_upstream, tmp_path, spool):
    from django.conf import settings

    keys = seed(cluster)
    log = tmp_path / "gateway.log"
    env = {"GATEWAY_USAGE_SPOOL_DIR": str(tmp_path / "spool"), "WEB_CONCURRENCY": "2",
           "REDIS_URL": settings.REDIS_URL if spool == "redis" else "",
           "GATEWAY_REDIS_PREFIX": f"{settings.GATEWAY_REDIS_PREFIX}{uuid.uuid4().hex[:8]}:"}
    gateway, process = start_gateway(cluster.url, outage_upstream, log=log, **env)
    try:
        load = Load(gateway=gateway, hot=keys["hot"], cold=keys["cold"])
        result = asyncio.run(drive(load, cluster, outage_upstream, before=4, outage=5, after=3))
        check_outage(cluster, load, result, log, keys["tenant"])
    finally:
        stop_process(process)


@requires_postgres
def test_usage_spooled_to_a_file_is_replayed_by_the_next_process_after_a_restart(cluster, outage_upstream, tmp_path):
    keys = seed(cluster)
    env = {"GATEWAY_USAGE_SPOOL_DIR": str(tmp_path / "spool"), "REDIS_URL": ""}
    gateway, process = start_gateway(cluster.url, outage_upstream, log=tmp_path / "first.log", **env)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=keys["hot"], max_retries=0)
    ask = lambda: client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "hi"}])  # noqa: E731
    try:
        ask()  # the key and the catalog are now cached
        cluster.stop()
        try:
            answers = [ask() for _ in range(10)]
            spooled = sum(path.read_bytes().count(b"\n") for path in (tmp_path / "spool").glob("*.jsonl"))
            assert spooled >= 20  # ten usage rows and their ten turns
        finally:
            stop_process(process)  # the process ends with its rows still in its file
    finally:
        cluster.start()
    assert len(usage_rows(cluster, keys["tenant"])) == 1
    gateway, process = start_gateway(cluster.url, outage_upstream, log=tmp_path / "second.log", **env)
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway}/health").json()["usage_spool"]["depth"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(usage_rows(cluster, keys["tenant"])) == 11
        assert not list((tmp_path / "spool").glob("*.jsonl"))
        for answer in answers:  # their conversations, written from the spool, continue
            client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=keys["hot"], max_retries=0)
            client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "on"}],
                                           extra_body={"conversation_id": answer.model_extra["conversation_id"]})
    finally:
        stop_process(process)
