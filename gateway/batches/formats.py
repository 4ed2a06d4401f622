"""Batch input and output in both vendors' shapes. Pure: dicts and dataclasses in, dicts and bytes out.

OpenAI (`/v1/batches`): a JSONL input file, one request a line
(`{"custom_id", "method": "POST", "url", "body"}`); results in an output file (answered requests) and an
error file (everything else), each line `{"id", "custom_id", "response": {"status_code", "request_id",
"body"} | null, "error": {"code", "message"} | null}`. Anthropic (`/v1/messages/batches`): the requests in
the create body (`{"custom_id", "params"}`), results as JSONL `{"custom_id", "result": {"type":
"succeeded" | "errored" | "canceled" | "expired", "message" | "error"}}`.

Where the vendors refuse a whole batch we do too: a duplicate custom_id (OpenAI: the batch fails
validation, with the line; Anthropic: a 400 on create). A malformed line, unlike OpenAI (which fails the
whole file), is reported on its own line of the error file and the rest runs: one bad line in 50,000
should not cost the other 49,999 a resubmission.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
ANTHROPIC_ENDPOINT = "/v1/messages"
MAX_REQUESTS = 100_000  # Anthropic's limit per batch; OpenAI's is 50,000 (a file may hold either)
OPENAI_MAX_REQUESTS = 50_000
CUSTOM_ID_MAX = 512  # OpenAI documents none; what we keep per item
_ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class BatchInputError(ValueError):
    """The whole batch is refused: `errors` are OpenAI BatchError objects (code, message, param, line)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.errors, self.param = message, errors or [], param


@dataclass(slots=True)
class Line:
    """One request of a batch: its body, or why it cannot run (`error`: code and message)."""

    line: int  # 1-based line of the input file, or index + 1 of Anthropic's requests
    custom_id: str | None
    body: dict[str, Any] | None
    error: dict[str, Any] | None = None


def _line_error(code: str, message: str, line: int) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line}


def openai_lines(data: bytes, endpoint: str) -> list[Line]:
    """The requests of an OpenAI batch input file; a line that cannot run carries its error.

    Blank lines are skipped (a trailing newline is normal). Raises BatchInputError for what fails the
    whole batch: no requests at all, too many, or a custom_id used twice.
    """
    lines: list[Line] = []
    seen: dict[str, int] = {}
    duplicates: list[dict[str, Any]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) >= OPENAI_MAX_REQUESTS:
            raise BatchInputError(f"The input file holds more than {OPENAI_MAX_REQUESTS} requests.",
                                  [{"code": "too_many_requests", "message": f"More than {OPENAI_MAX_REQUESTS} "
                                    "requests.", "param": None, "line": number}])
        lines.append(item := _openai_line(raw, number, endpoint))
        if item.custom_id is not None:
            if item.custom_id in seen:
                duplicates.append({"code": "duplicate_custom_id", "param": "custom_id", "line": number,
                                   "message": f"The custom_id '{item.custom_id}' is used on line {seen[item.custom_id]} "
                                              f"and again on line {number}; each request needs its own."})
            else:
                seen[item.custom_id] = number
    if duplicates:
        raise BatchInputError("Each request of a batch needs a unique custom_id.", duplicates)
    if not lines:
        raise BatchInputError("The input file holds no requests.",
                              [{"code": "empty_file", "message": "The input file holds no requests.", "param": None,
                                "line": None}])
    return lines


def _openai_line(raw: bytes, number: int, endpoint: str) -> Line:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Line(number, None, None, _line_error("invalid_json_line", f"Line {number} is not valid JSON: {exc}.",
                                                    number))
    if not isinstance(value, dict):
        return Line(number, None, None, _line_error("invalid_request", f"Line {number} must be a JSON object.", number))
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > CUSTOM_ID_MAX:
        return Line(number, None, None, _line_error(
            "invalid_custom_id", f"Line {number}: 'custom_id' must be a string of 1 to {CUSTOM_ID_MAX} characters.",
            number))
    if value.get("method") != "POST":
        return Line(number, custom_id, None, _line_error(
            "invalid_method", f"Line {number}: 'method' must be 'POST'.", number))
    if value.get("url") != endpoint:
        return Line(number, custom_id, None, _line_error(
            "invalid_url", f"Line {number}: 'url' must be the batch's endpoint '{endpoint}', not "
                           f"{value.get('url')!r}.", number))
    body = value.get("body")
    if not isinstance(body, dict):
        return Line(number, custom_id, None, _line_error(
            "invalid_body", f"Line {number}: 'body' must be a JSON object.", number))
    return Line(number, custom_id, body)


def anthropic_requests(body: Any) -> list[Line]:
    """The requests of an Anthropic batch create body. Raises BatchInputError (a 400) for a malformed
    list or entry and a duplicate custom_id, as the API does; the params themselves are judged per
    request when it runs (an invalid one is an errored result)."""
    if not isinstance(body, dict):
        raise BatchInputError("The request body must be a JSON object.")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise BatchInputError("requests: Field required (a non-empty list of {custom_id, params}).",
                              param="requests")
    if len(requests) > MAX_REQUESTS:
        raise BatchInputError(f"requests: at most {MAX_REQUESTS} requests per batch.", param="requests")
    extra = set(body) - {"requests"}
    if extra:
        raise BatchInputError(f"{sorted(extra)[0]}: Extra inputs are not permitted", param=sorted(extra)[0])
    lines: list[Line] = []
    seen: set[str] = set()
    for index, entry in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(entry, dict):
            raise BatchInputError(f"{where}: Input should be an object", param=where)
        custom_id, params = entry.get("custom_id"), entry.get("params")
        if not isinstance(custom_id, str) or not _ANTHROPIC_CUSTOM_ID.match(custom_id):
            raise BatchInputError(f"{where}.custom_id: must be 1 to 64 letters, digits, '_' or '-'.",
                                  param=f"{where}.custom_id")
        if custom_id in seen:
            raise BatchInputError(f"{where}.custom_id: Duplicate custom_id '{custom_id}': each request in a batch "
                                  "needs a unique custom_id.", param=f"{where}.custom_id")
        seen.add(custom_id)
        if not isinstance(params, dict):
            raise BatchInputError(f"{where}.params: Input should be an object", param=f"{where}.params")
        extra = set(entry) - {"custom_id", "params"}
        if extra:
            raise BatchInputError(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted",
                                  param=f"{where}.{sorted(extra)[0]}")
        if params.get("stream"):
            lines.append(Line(index + 1, custom_id, None, {"type": "invalid_request_error", "message":
                              "stream: streaming is not supported in a batch."}))
            continue
        lines.append(Line(index + 1, custom_id, params))
    return lines


# --- Objects -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchState:
    """What a batch object shows, read from the database (times as aware datetimes or None)."""

    id: str
    endpoint: str
    status: str  # in_progress, cancelling, finalizing, completed, cancelled, failed, expired
    created_at: datetime
    expires_at: datetime
    total: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    input_file_id: str = ""
    output_file_id: str = ""
    error_file_id: str = ""
    completion_window: str = "24h"
    model: str = ""
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    in_progress_at: datetime | None = None
    finalizing_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    expired_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    ended_at: datetime | None = None
    archived_at: datetime | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


def _unix(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def _rfc3339(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def openai_batch(state: BatchState) -> dict[str, Any]:
    """OpenAI's Batch object. Fields with no value are left out: the spec types them as plain integers
    and strings (not nullable), and the SDK reads a missing one as None."""
    status = state.status
    body: dict[str, Any] = {
        "id": state.id, "object": "batch", "endpoint": state.endpoint, "input_file_id": state.input_file_id,
        "completion_window": state.completion_window, "status": status, "created_at": _unix(state.created_at),
        "expires_at": _unix(state.expires_at),
        "request_counts": {"total": state.total, "completed": state.succeeded,
                           "failed": state.errored + state.canceled + state.expired},
        "usage": {"input_tokens": state.input_tokens, "input_tokens_details": {"cached_tokens": state.cached_tokens},
                  "output_tokens": state.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": state.input_tokens + state.output_tokens},
        "metadata": state.metadata,
    }
    if state.model:
        body["model"] = state.model
    if state.errors:
        body["errors"] = {"object": "list", "data": [{"param": None, "line": None, **error} for error in state.errors]}
    for name in ("output_file_id", "error_file_id"):
        if getattr(state, name):
            body[name] = getattr(state, name)
    for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                 "cancelled_at"):
        if getattr(state, name) is not None:
            body[name] = _unix(getattr(state, name))
    return body


def anthropic_processing_status(status: str) -> str:
    return {"in_progress": "in_progress", "cancelling": "canceling"}.get(status, "ended")


def anthropic_batch(state: BatchState, results_url: str) -> dict[str, Any]:
    """Anthropic's MessageBatch. Requests count as `processing` until the whole batch ends, as upstream."""
    processing_status = anthropic_processing_status(state.status)
    ended = processing_status == "ended"
    return {
        "id": state.id, "type": "message_batch", "processing_status": processing_status,
        "request_counts": {
            "processing": 0 if ended else state.total,
            "succeeded": state.succeeded if ended else 0, "errored": state.errored if ended else 0,
            "canceled": state.canceled if ended else 0, "expired": state.expired if ended else 0,
        },
        "ended_at": _rfc3339(state.ended_at), "created_at": _rfc3339(state.created_at),
        "expires_at": _rfc3339(state.expires_at), "archived_at": _rfc3339(state.archived_at),
        "cancel_initiated_at": _rfc3339(state.cancelling_at), "results_url": results_url if ended else None,
    }


def openai_file(*, id: str, bytes_: int, created_at: datetime, filename: str, purpose: str,
                expires_at: datetime | None) -> dict[str, Any]:
    body = {"id": id, "object": "file", "bytes": bytes_, "created_at": _unix(created_at), "filename": filename,
            "purpose": purpose, "status": "processed"}
    if expires_at is not None:
        body["expires_at"] = _unix(expires_at)
    return body


# --- Results -------------------------------------------------------------------------------------------


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def openai_result_line(*, item_id: str, custom_id: str | None, status_code: int | None, request_id: str,
                       body: dict[str, Any] | None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of an output or error file: an answer (any status) in `response`, or `error` for a request
    that never ran (malformed, cancelled, expired)."""
    response = None if status_code is None else {"status_code": status_code, "request_id": request_id, "body": body}
    return {"id": item_id, "custom_id": custom_id, "response": response, "error": error}


def anthropic_result_line(*, custom_id: str, kind: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """`kind` succeeded (payload: the Message), errored (payload: the error response), canceled, expired."""
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        result["message"] = payload
    elif kind == "errored":
        result["error"] = payload
    return {"custom_id": custom_id, "result": result}
