#!/usr/bin/env python
"""Summarise a py-spy raw (collapsed-stack) profile of the gateway worker by area.

    .venv/bin/python bench/profile_summary.py bench/results/<run>-pyspy.txt

Each sample is charged to one area: walking from the innermost frame outwards, the first frame whose
file belongs to a known area decides (generic stdlib helpers such as copy, json, contextlib, typing are
skipped, so a deepcopy inside pydantic counts as "anthropic SDK request building"). Samples on the
sync thread (asgiref's executor: the ORM and psycopg) are charged to "sync thread" whatever they run.
With `py-spy record --gil` only samples where a thread held the GIL are recorded, so the percentages
are shares of the worker's Python time, not of wall time.

A second table gives inclusive shares of the request's main steps (a sample counts for every step on
its stack).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (area, regex on "function (file:line)" frames); first match from the innermost frame wins.
AREAS: list[tuple[str, str]] = [
    ("auth + catalog caches (accounts.selectors/keys, gateway.auth/selectors)",
     r"\((accounts/(selectors|keys)\.py|gateway/(auth|selectors)\.py)"),
    ("usage recorder, async side (billing.services)", r"\(billing/services\.py"),
    ("asgiref sync_to_async hop (event-loop side)", r"\(asgiref/"),
    ("gateway pipeline, codec, provider glue (own code)", r"\(gateway/(pipeline|core|api/|protocols/|providers/)"),
    ("anthropic SDK request building (options, headers, pydantic)",
     r"\((anthropic/(?!_vendor)|pydantic/|pydantic_core/|typing_extensions|anyio/|distro/|sniffio/)"),
    ("httpx2 client layer (request/response models, URL, headers)", r"\(httpx2/"),
    ("aiohttp client transport", r"\((aiohttp/|anthropic/_vendor/httpx_aiohttp/|yarl/|multidict/|aiohappyeyeballs/|propcache/)"),
    ("django-ninja (operation, auth call, response)", r"\(ninja/"),
    ("Django ASGI handler, request/response, URL resolution",
     r"\((django/|gateway/handler\.py|config/asgi\.py)"),
    ("asyncio / event loop / futures", r"\((asyncio/|concurrent/futures/|granian/_futures|uvloop/|selectors\.py)"),
    ("granian worker (Python side)", r"\(granian/"),
]
_COMPILED = [(name, re.compile(rx)) for name, rx in AREAS]
_SYNC_THREAD = re.compile(r"SyncToAsync\.thread_handler|_WorkItem\.run \(concurrent/futures/thread\.py")

# Inclusive shares of the main steps of one request (frame regexes).
STEPS: list[tuple[str, str]] = [
    ("whole ASGI app (config.asgi.application)", r"^application \(config/asgi\.py"),
    ("  read body (ASGIHandler.read_body)", r"read_body \(django/core/handlers/asgi\.py"),
    ("  build HttpRequest (create_request)", r"create_request \(django/core/handlers/asgi\.py"),
    ("  URL resolution (resolve_request)", r"resolve_request \(django/core/handlers/base\.py"),
    ("  ninja: auth (BearerKey + key cache)", r"BearerKey\.__call__"),
    ("  gateway.pipeline.serve", r"^serve \(gateway/pipeline\.py"),
    ("    parse/decode request (orjson + codec)", r"(parse_json_body|decode_request) \("),
    ("    provider.create (SDK + transport + orjson.loads)", r"AnthropicProvider\.create"),
    ("      SDK: build request (FinalRequestOptions, headers, json)", r"(_build_request|FinalRequestOptions\.construct|AsyncAPIClient\.post \(anthropic/_base_client\.py:246[0-3])"),
    ("      httpx2 AsyncClient.send", r"AsyncClient\.send \(httpx2"),
    ("      aiohttp transport (handle_async_request)", r"AiohttpTransport\.handle_async_request"),
    ("      SDK: process response", r"_process_response"),
    ("    Meter.finish -> usage_recorder.record", r"Meter\.finish"),
    ("    encode response (codec + orjson + HttpResponse)", r"(encode_response|json_response) \("),
    ("  send response (ASGIHandler.send_response)", r"send_response \(django/core/handlers/asgi\.py"),
    ("sync thread: ORM + psycopg (usage INSERT, key/catalog reloads)", r"SyncToAsync\.thread_handler"),
]
_STEPS = [(name, re.compile(rx)) for name, rx in STEPS]


def load(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((stack.split(";"), int(count)))
    return samples


def classify(frames: list[str]) -> str:
    if any(_SYNC_THREAD.search(f) for f in frames):
        return "sync thread: Django ORM + psycopg (usage INSERT, key/catalog reloads)"
    for frame in reversed(frames):
        for name, rx in _COMPILED:
            if rx.search(frame):
                return name
    return "other (idle loop, interpreter, unattributed)"


def summarize(path) -> list[tuple[str, float]]:
    samples = load(Path(path))
    total = sum(n for _, n in samples) or 1
    areas: Counter[str] = Counter()
    for frames, n in samples:
        areas[classify(frames)] += n
    return [(name, 100 * n / total) for name, n in areas.most_common()]


def steps(path) -> list[tuple[str, float]]:
    samples = load(Path(path))
    total = sum(n for _, n in samples) or 1
    out = []
    for name, rx in _STEPS:
        n = sum(c for frames, c in samples if any(rx.search(f) for f in frames))
        out.append((name, 100 * n / total))
    return out


def top_self(path, limit: int = 25) -> list[tuple[str, float]]:
    samples = load(Path(path))
    total = sum(n for _, n in samples) or 1
    own: Counter[str] = Counter()
    for frames, n in samples:
        own[re.sub(r":\d+\)$", ")", frames[-1])] += n
    return [(f, 100 * n / total) for f, n in own.most_common(limit)]


def main() -> None:
    path = Path(sys.argv[1])
    total = sum(n for _, n in load(path))
    print(f"{path}: {total} samples\n\n| area | % of samples |\n|---|---:|")
    for name, pct in summarize(path):
        print(f"| {name} | {pct:.1f} |")
    print("\n| step (inclusive) | % of samples |\n|---|---:|")
    for name, pct in steps(path):
        print(f"| {name.replace('  ', '&nbsp;&nbsp;')} | {pct:.1f} |")
    print("\n| top functions (self) | % |\n|---|---:|")
    for name, pct in top_self(path):
        print(f"| `{name}` | {pct:.1f} |")


if __name__ == "__main__":
    main()
