"""What a gateway process does when its upstream misbehaves: the fault proxy (fakes/faults.py)
between it and the fake Anthropic server hangs, resets, cuts streams and sends garbage on command.

Every request that reached the upstream has exactly one usage row, whose status and error_type say
what happened; clients are found by their `ah-trace-id`, since one that gave up never saw its request id.
"""

from __future__ import annotations

import threading
import time
import uuid

import anthropic
import httpx
import pytest

from billing.models import UsageEvent
from tests.support.e2e import start_gateway, stop_process

pytestmark = pytest.mark.e2e

SONNET = "claude-sonnet-4-6"
POOL = 4  # UPSTREAM_MAX_CONNECTIONS of the gateways here: a handful of hung calls fill it


@pytest.fixture
def alice(personas):
    return personas["alice"]


@pytest.fixture(scope="module")
def faulty_gateway(gateway_db_url, _fault_proxy_session):
    """A gateway whose upstream is the fault proxy, no retries, a small pool and the default first-byte timeout."""
    url, process = start_gateway(gateway_db_url, _fault_proxy_session.url, UPSTREAM_RETRIES="0",
                                 UPSTREAM_MAX_CONNECTIONS=str(POOL))
    yield url
    stop_process(process)


@pytest.fixture(scope="module")
def impatient_gateway(gateway_db_url, _fault_proxy_session):
    """As faulty_gateway, with a 1 s first-byte timeout and /health failing after 0.5 s of a full pool."""
    url, process = start_gateway(gateway_db_url, _fault_proxy_session.url, UPSTREAM_RETRIES="0",
                                 UPSTREAM_MAX_CONNECTIONS=str(POOL), UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS="1",
                                 UPSTREAM_POOL_SATURATED_SECONDS="0.5")
    yield url
    stop_process(process)


def message(text: str, *, stream: bool = False) -> dict:
    body = {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return {**body, "stream": True} if stream else body


def post(gateway: str, key: str, body: dict, *, trace: str, timeout: float = 10.0,
         path: str = "/v1/messages") -> httpx.Response:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "ah-trace-id": trace}
    return httpx.post(gateway + path, json=body, headers=headers, timeout=timeout)


def give_up(gateway: str, key: str, body: dict, *, trace: str, timeout: float) -> None:
    """A client that times out and disconnects before any answer."""
    with pytest.raises(httpx.ReadTimeout):
        post(gateway, key, body, trace=trace, timeout=timeout)


def wait_for(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return result


def upstream_outcome(fake_upstream: str, tag: str) -> str:
    """The fake's outcome for the request whose body mentions `tag`, once it has one."""
    def finished():
        entries = [e for e in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(e["body"])]
        return entries and entries[-1]["outcome"] != "in_progress" and entries[-1]["outcome"]

    return wait_for(finished, f"the upstream request {tag} finished")


def rows(trace: str, django_db_blocker, count: int = 1) -> list[UsageEvent]:
    """The usage rows of the requests sent with `trace`, once there are `count` (and then checks no more)."""
    def found():
        with django_db_blocker.unblock():
            return list(UsageEvent.objects.filter(trace_id=trace)) if UsageEvent.objects.filter(
                trace_id=trace).count() >= count else None

    result = wait_for(found, f"{count} usage rows for {trace}")
    assert len(result) == count
    return result


def trace_id() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_hung_upstream_stops_costing_connections_once_its_clients_leave(faulty_gateway, fault_proxy, alice, stream,
                                                                          django_db_blocker):
    fault_proxy.set("hang")
    trace = trace_id()
    clients = [threading.Thread(target=give_up, args=(faulty_gateway, alice.key, message(f"hung {i}", stream=stream)),
                                kwargs={"trace": trace, "timeout": 1.0}) for i in range(POOL)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    # The clients' leaving closed the gateway's upstream calls, so no connection is held any more.
    wait_for(lambda: fault_proxy.state()["hanging"] == 0, "the gateway let go of the hung upstream calls")
    fault_proxy.set("pass")
    response = post(faulty_gateway, alice.key, message("recovered", stream=stream), trace=trace_id())
    assert response.status_code == 200
    assert {(row.status, row.error_type) for row in rows(trace, django_db_blocker, POOL)} == {
        (UsageEvent.Status.PARTIAL, "client_left")}


def test_a_client_leaving_a_plain_call_cancels_it_upstream_and_bills_the_input_estimate(
        faulty_gateway, fault_proxy, alice, fake_upstream, django_db_blocker):
    trace, tag = trace_id(), uuid.uuid4().hex
    give_up(faulty_gateway, alice.key, message(f"{tag} [[fake:delay_ms=3000]]"), trace=trace, timeout=0.5)
    assert upstream_outcome(fake_upstream, tag) == "aborted"
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.PARTIAL, "client_left", 499)
    assert row.input_tokens > 0 and row.output_tokens == 0 and row.cost_nano > 0


def test_a_stream_whose_client_leaves_before_the_first_byte_is_client_left(
        faulty_gateway, fault_proxy, alice, fake_upstream, django_db_blocker):
    trace, tag = trace_id(), uuid.uuid4().hex
    give_up(faulty_gateway, alice.key, message(f"{tag} [[fake:delay_ms=3000]]", stream=True), trace=trace,
            timeout=0.5)
    assert upstream_outcome(fake_upstream, tag) == "aborted"
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.PARTIAL, "client_left", 499)
    assert row.output_tokens == 0


def test_a_stream_the_client_cuts_midway_is_partial_client_left(faulty_gateway, fault_proxy, alice, fake_upstream,
                                                                django_db_blocker):
    trace, tag = trace_id(), uuid.uuid4().hex
    headers = {"x-api-key": alice.key, "anthropic-version": "2023-06-01", "ah-trace-id": trace}
    body = message(f"{tag} [[fake:words=200, chunk_delay_ms=50]]", stream=True)
    with httpx.stream("POST", faulty_gateway + "/v1/messages", json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        next(response.iter_raw())
    assert upstream_outcome(fake_upstream, tag) == "aborted"
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.PARTIAL, "client_left", 200)
    assert row.input_tokens > 0


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", message("hang on", stream=True)),
    ("/v1/chat/completions", {"model": SONNET, "stream": True, "messages": [{"role": "user", "content": "hang on"}]}),
], ids=["anthropic", "openai"])
def test_the_first_byte_timeout_is_a_504_in_the_protocols_shape_and_frees_the_connection(
        impatient_gateway, fault_proxy, alice, path, body, django_db_blocker):
    fault_proxy.set("hang")
    trace = trace_id()
    auth = {"x-api-key": alice.key, "anthropic-version": "2023-06-01"} if path == "/v1/messages" else {
        "authorization": f"Bearer {alice.key}"}
    headers = {**auth, "ah-trace-id": trace}
    response = httpx.post(impatient_gateway + path, json=body, headers=headers, timeout=30)
    assert response.status_code == 504
    error = response.json()["error"]
    if path == "/v1/messages":
        assert response.json()["type"] == "error" and error["type"] == "api_error"
    else:
        assert error["code"] == "first_byte_timeout"
    assert fault_proxy.state()["hanging"] == 0
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.ERROR, "first_byte_timeout", 504)


def test_health_is_503_while_the_upstream_pool_is_saturated(impatient_gateway, fault_proxy, alice):
    fault_proxy.set("hang")
    # Plain calls have no first-byte timeout (their head comes with the whole answer): they hold their
    # connections until the clients give up.
    clients = [threading.Thread(target=give_up, args=(impatient_gateway, alice.key, message(f"fill {i}")),
                                kwargs={"trace": trace_id(), "timeout": 8.0}) for i in range(POOL)]
    for client in clients:
        client.start()
    saturated = wait_for(lambda: (r := httpx.get(impatient_gateway + "/health")).status_code == 503 and r,
                         "/health reports the full pool")
    assert saturated.json()["checks"]["upstream_pool"] == "saturated"
    assert saturated.json()["upstream_pools"]["anthropic"] == {"in_flight": POOL, "limit": POOL, "saturated": True}
    for client in clients:
        client.join()
    healthy = wait_for(lambda: (r := httpx.get(impatient_gateway + "/health")).status_code == 200 and r,
                       "/health is 200 once the clients left")
    assert healthy.json()["upstream_pools"]["anthropic"]["in_flight"] == 0


def test_a_stream_cut_by_the_upstream_ends_in_a_shaped_error_with_one_usage_row(
        faulty_gateway, fault_proxy, alice, fake_upstream, django_db_blocker):
    fault_proxy.set("midstream_close", events=4)
    trace, tag = trace_id(), uuid.uuid4().hex
    with anthropic.Anthropic(api_key=alice.key, base_url=faulty_gateway, max_retries=0, timeout=10,
                             default_headers={"ah-trace-id": trace}) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            with client.messages.stream(**message(f"{tag} [[fake:words=50]]")) as stream:
                for _ in stream:
                    pass
    assert raised.value.body["error"]["type"] == "api_error"
    assert upstream_outcome(fake_upstream, tag) in {"completed", "aborted"}
    assert [entry["outcome"] for entry in fault_proxy.requests()] == ["cut"]
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.ERROR, "upstream_cut", 502)
    assert row.input_tokens > 0


@pytest.mark.parametrize(("mode", "stream", "reason"), [
    ("garbage", False, "upstream_malformed"),
    ("garbage", True, "upstream_malformed"),
    ("reset", False, "upstream_unreachable"),
    ("reset", True, "upstream_unreachable"),
])
def test_garbage_and_resets_are_shaped_502s_with_one_usage_row(faulty_gateway, fault_proxy, alice, mode, stream,
                                                               reason, django_db_blocker):
    fault_proxy.set(mode)
    trace = trace_id()
    response = post(faulty_gateway, alice.key, message("broken", stream=stream), trace=trace)
    assert response.status_code == 502
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "api_error"
    assert [entry["outcome"] for entry in fault_proxy.requests()] == [mode]
    (row,) = rows(trace, django_db_blocker)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.ERROR, reason, 502)
