"""Batch input parsing and the vendors' objects (gateway/batches/formats.py): pure, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway.batches import formats
from tests.support.openapi import spec_available, validate

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def line(custom_id="a", url="/v1/chat/completions", **extra) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": "m"}, **extra}).encode()


def test_each_malformed_line_carries_its_own_error_and_the_rest_is_kept():
    data = b"\n".join([line("a"), b"{not json", b"[1]", line("b", url="/v1/embeddings"), line(""),
                       line("c", method="GET"), json.dumps({"custom_id": "d", "method": "POST",
                                                           "url": "/v1/chat/completions", "body": 3}).encode(),
                       b"", line("e"), b""])
    parsed = formats.openai_lines(data, "/v1/chat/completions")
    assert [(p.line, p.custom_id, p.error and p.error["code"]) for p in parsed] == [
        (1, "a", None), (2, None, "invalid_json_line"), (3, None, "invalid_request"), (4, "b", "invalid_url"),
        (5, None, "invalid_custom_id"), (6, "c", "invalid_method"), (7, "d", "invalid_body"), (9, "e", None)]
    assert parsed[0].body == {"model": "m"} and parsed[1].body is None
    assert all(p.error["line"] == p.line for p in parsed if p.error)


def test_a_duplicate_custom_id_fails_the_whole_openai_batch_naming_both_lines():
    with pytest.raises(formats.BatchInputError) as caught:
        formats.openai_lines(b"\n".join([line("x"), line("y"), line("x")]), "/v1/chat/completions")
    [error] = caught.value.errors
    assert error["code"] == "duplicate_custom_id" and error["line"] == 3 and "line 1" in error["message"]


def test_an_empty_input_file_fails_the_batch():
    with pytest.raises(formats.BatchInputError) as caught:
        formats.openai_lines(b"\n\n", "/v1/chat/completions")
    assert caught.value.errors[0]["code"] == "empty_file"


@pytest.mark.parametrize("body, fragment", [
    ({}, "requests"), ({"requests": []}, "requests"), ({"requests": [1]}, "requests.0"),
    ({"requests": [{"custom_id": "a b", "params": {}}]}, "custom_id"),
    ({"requests": [{"custom_id": "a", "params": []}]}, "params"),
    ({"requests": [{"custom_id": "a", "params": {}, "x": 1}]}, "Extra inputs"),
    ({"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]}, "Duplicate custom_id"),
    ({"requests": [{"custom_id": "a", "params": {}}], "other": 1}, "Extra inputs"),
])
def test_anthropic_requests_are_refused_as_the_api_does(body, fragment):
    with pytest.raises(formats.BatchInputError) as caught:
        formats.anthropic_requests(body)
    assert fragment in caught.value.message


def test_a_streaming_anthropic_request_is_an_errored_item_not_a_refused_batch():
    parsed = formats.anthropic_requests({"requests": [{"custom_id": "a", "params": {"stream": True}},
                                                      {"custom_id": "b", "params": {"model": "m"}}]})
    assert parsed[0].error["type"] == "invalid_request_error" and parsed[1].error is None


def state(**fields) -> formats.BatchState:
    base = dict(id="batch_1", endpoint="/v1/chat/completions", status="in_progress", created_at=NOW,
                expires_at=NOW + timedelta(hours=24), total=4, succeeded=1, errored=1, canceled=0, expired=0,
                input_file_id="file-1", in_progress_at=NOW)
    return formats.BatchState(**{**base, **fields})


@pytest.mark.skipif(not spec_available(), reason="needs the OpenAI OpenAPI spec")
@pytest.mark.parametrize("fields", [
    {}, {"status": "completed", "ended_at": NOW, "completed_at": NOW, "finalizing_at": NOW, "output_file_id": "file-2",
         "error_file_id": "file-3", "metadata": {"a": "b"}},
    {"status": "failed", "failed_at": NOW, "errors": [{"code": "duplicate_custom_id", "message": "m", "line": 2}]},
    {"status": "cancelled", "cancelling_at": NOW, "cancelled_at": NOW},
])
def test_openai_batch_objects_match_the_spec(fields):
    body = formats.openai_batch(state(**fields))
    validate("Batch", body)
    assert body["request_counts"] == {"total": 4, "completed": 1, "failed": 1}


def test_anthropic_counts_are_processing_until_the_batch_ends():
    running = formats.anthropic_batch(state(), "https://h/v1/messages/batches/b/results")
    assert running["processing_status"] == "in_progress" and running["results_url"] is None
    assert running["request_counts"] == {"processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    ended = formats.anthropic_batch(state(status="cancelled", ended_at=NOW, succeeded=1, errored=1, canceled=2,
                                          cancelling_at=NOW), "https://h/r")
    assert ended["processing_status"] == "ended" and ended["results_url"] == "https://h/r"
    assert ended["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 2, "expired": 0}
    assert ended["created_at"] == "2026-01-02T03:04:05.000000Z" and ended["cancel_initiated_at"] is not None
    assert formats.anthropic_batch(state(status="cancelling"), "u")["processing_status"] == "canceling"


@pytest.mark.skipif(not spec_available(), reason="needs the OpenAI OpenAPI spec")
def test_file_objects_match_the_spec():
    validate("OpenAIFile", formats.openai_file(id="file-1", bytes_=3, created_at=NOW, filename="a.jsonl",
                                               purpose="batch", expires_at=None))
    validate("OpenAIFile", formats.openai_file(id="file-1", bytes_=3, created_at=NOW, filename="a.jsonl",
                                               purpose="batch_output", expires_at=NOW))


def test_result_lines():
    assert formats.anthropic_result_line(custom_id="a", kind="canceled", payload=None) == {
        "custom_id": "a", "result": {"type": "canceled"}}
    assert formats.anthropic_result_line(custom_id="a", kind="succeeded", payload={"id": "m"})["result"] == {
        "type": "succeeded", "message": {"id": "m"}}
    assert formats.openai_result_line(item_id="i", custom_id="c", status_code=None, request_id="", body=None,
                                      error={"code": "batch_expired", "message": "m"})["response"] is None
    assert formats.jsonl([{"a": 1}, {"b": 2}]) == b'{"a":1}\n{"b":2}\n'
