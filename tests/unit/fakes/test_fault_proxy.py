"""Tests for the fault-injection proxy (fakes.faults), run as a process in front of the fakes."""

from __future__ import annotations

import time

import anthropic
import httpx
import orjson
import pytest

from tests.support.e2e import FaultProxy

HEADERS = {"x-api-key": "sk-secret-upstream-key", "anthropic-version": "2023-06-01"}
SONNET = "claude-sonnet-4-6"


def message(text: str = "Hello there", **extra) -> dict:
    return {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}


def post(proxy: FaultProxy, payload: dict, timeout: float = 10.0, path: str = "/v1/messages",
         headers: dict | None = None) -> httpx.Response:
    return httpx.post(proxy.url + path, json=payload, headers=HEADERS if headers is None else headers,
                      timeout=timeout)


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def sse_events(raw: bytes) -> list[bytes]:
    return [event for event in raw.split(b"\n\n") if event]


def test_pass_mode_forwards_plain_and_streamed_answers(fault_proxy):
    with anthropic.Anthropic(api_key="k", base_url=fault_proxy.url, max_retries=0) as client:
        reply = client.messages.create(**message())
        assert reply.content[0].text.startswith("Hello from the fake upstream")
        with client.messages.stream(**message("stream me")) as stream:
            assert "stream me" in stream.get_final_text()
    assert [(e["mode"], e["outcome"], e["status"]) for e in fault_proxy.requests()] == [
        ("pass", "forwarded", 200), ("pass", "forwarded", 200)]


def test_hang_holds_the_request_until_the_client_leaves(fault_proxy):
    fault_proxy.set("hang")
    with pytest.raises(httpx.ReadTimeout):
        post(fault_proxy, message(), timeout=0.3)
    wait_for(lambda: fault_proxy.state()["hanging"] == 0, "the hung request is released")
    assert [(e["mode"], e["outcome"]) for e in fault_proxy.requests()] == [("hang", "aborted")]


def test_delay_forwards_after_the_delay(fault_proxy):
    fault_proxy.set("delay", ms=1500)
    with pytest.raises(httpx.ReadTimeout):
        post(fault_proxy, message(), timeout=0.3)
    assert post(fault_proxy, message()).json()["type"] == "message"
    assert [e["outcome"] for e in fault_proxy.requests()] == ["aborted", "forwarded"]


def test_a_client_leaving_the_proxy_aborts_the_upstream_request(fault_proxy, fake_upstream):
    marker = f"abort-{time.monotonic_ns()}"
    with pytest.raises(httpx.ReadTimeout):
        post(fault_proxy, message(f"{marker} [[fake:delay_ms=1500]]"), timeout=0.3)

    def upstream_outcome() -> str | None:
        log = httpx.get(fake_upstream + "/_fake/requests").json()
        entries = [e for e in log if marker in orjson.dumps(e["body"]).decode()]
        return entries[-1]["outcome"] if entries else None

    wait_for(lambda: upstream_outcome() == "aborted", "the fake logs the forwarded request as aborted")


def test_reset_drops_the_connection_without_an_answer(fault_proxy):
    fault_proxy.set("reset")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(fault_proxy, message())
    assert [e["outcome"] for e in fault_proxy.requests()] == ["reset"]


def test_times_limits_a_mode_to_the_next_requests(fault_proxy):
    fault_proxy.set("reset", times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(fault_proxy, message())
    assert post(fault_proxy, message()).status_code == 200
    assert fault_proxy.state()["mode"] == {"mode": "pass"}


def test_garbage_is_a_200_that_is_not_json_or_not_json_events(fault_proxy):
    fault_proxy.set("garbage")
    plain = post(fault_proxy, message())
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(plain.content)
    streamed = post(fault_proxy, message(stream=True))
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    for event in sse_events(streamed.content):
        data = next(line for line in event.split(b"\n") if line.startswith(b"data: "))
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(data[len(b"data: "):])


def test_midstream_close_relays_the_first_events_then_drops_the_connection(fault_proxy):
    fault_proxy.set("midstream_close", events=2)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", fault_proxy.url + "/v1/messages", json=message(stream=True), headers=HEADERS) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += chunk
    assert [e.split(b"\n")[0] for e in sse_events(received)] == [b"event: message_start", b"event: ping"]
    assert received.endswith(b"\n\n")
    assert [e["outcome"] for e in fault_proxy.requests()] == ["cut"]


def test_midstream_close_by_bytes_cuts_a_plain_body(fault_proxy):
    fault_proxy.set("midstream_close", bytes=10)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", fault_proxy.url + "/v1/messages", json=message(), headers=HEADERS) as r:
            for chunk in r.iter_raw():
                received += chunk
    assert received == b'{"id":"msg'


def test_echo_credentials_answers_anthropic_errors_with_the_request_credentials(fault_proxy):
    fault_proxy.set("echo_credentials", status=401)
    response = post(fault_proxy, message(), headers={**HEADERS, "authorization": "Bearer sk-bearer-secret"})
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "sk-secret-upstream-key" in body["error"]["message"] and "sk-bearer-secret" in body["error"]["message"]


def test_echo_credentials_answers_openai_errors_on_openai_paths(fault_openai_proxy):
    fault_openai_proxy.set("echo_credentials", status=500)
    response = httpx.post(fault_openai_proxy.url + "/v1/chat/completions",
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"authorization": "Bearer sk-openai-secret"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
    assert "sk-openai-secret" in error["message"]


def test_control_route_rejects_unknown_modes_and_parameters(fault_proxy):
    assert httpx.put(fault_proxy.url + "/_fault", json={"mode": "explode"}).status_code == 400
    assert httpx.put(fault_proxy.url + "/_fault", json={"mode": "delay", "seconds": 1}).status_code == 400
    assert httpx.put(fault_proxy.url + "/_fault", json={"mode": "reset", "times": 0}).status_code == 400
    assert fault_proxy.state()["mode"] == {"mode": "pass"}
