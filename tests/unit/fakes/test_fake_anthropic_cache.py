"""The fake Anthropic upstream's prompt cache: writes, reads within the lifetime and the lookback, per key."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anthropic
import httpx
import pytest

from fakes.anthropic import start
from tests.support.anthropic_events import parse_sse

SONNET = "claude-sonnet-4-6"
EPHEMERAL = {"type": "ephemeral"}
SYSTEM = [{"type": "text", "text": "Rules. " * 1200, "cache_control": EPHEMERAL}]  # ~2,100 tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def url(clock):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(start("127.0.0.1", 0, clock=clock), loop).result(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture(autouse=True)
def empty_cache(url):
    httpx.delete(f"{url}/_fake/cache")


def ask(url: str, messages: list[dict[str, Any]], *, key: str = "k1", system: Any = SYSTEM, **extra: Any) -> dict:
    with anthropic.Anthropic(api_key=key, base_url=url, max_retries=0) as client:
        message = client.messages.create(model=SONNET, max_tokens=50, system=system, messages=messages, **extra)
    return message.usage.model_dump()


def counted(url: str, messages: list[dict[str, Any]], system: Any = SYSTEM) -> int:
    with anthropic.Anthropic(api_key="k", base_url=url, max_retries=0) as client:
        return client.messages.count_tokens(model=SONNET, system=system, messages=messages).input_tokens


def turn(text: str, marked: bool = False) -> dict[str, Any]:
    block = {"type": "text", "text": text, **({"cache_control": EPHEMERAL} if marked else {})}
    return {"role": "assistant", "content": [block]}


def test_a_repeated_prefix_is_written_once_then_read(url):
    messages = [{"role": "user", "content": "Hello"}]
    total = counted(url, messages)
    first, second = ask(url, messages), ask(url, messages)
    assert first["cache_creation_input_tokens"] > 2000 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    for usage in (first, second):  # the three counts add up to the uncached count
        assert usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"] == total


def test_a_breakpoint_moving_forward_reads_the_previous_prefix_and_writes_the_rest(url):
    history = [{"role": "user", "content": "Hello"}]
    ask(url, [*history, turn("a" * 400, marked=True), {"role": "user", "content": "More"}])
    usage = ask(url, [*history, turn("a" * 400), {"role": "user", "content": "More"}, turn("b" * 400, marked=True),
                      {"role": "user", "content": "Again"}])
    assert usage["cache_read_input_tokens"] > 2000  # system + the first exchange, written by the first request
    assert 100 < usage["cache_creation_input_tokens"] < 120  # the second exchange: 400 characters and a message
    assert usage["input_tokens"] < 10  # only the newest user turn


def test_entries_live_five_minutes_from_their_last_use(url, clock):
    messages = [{"role": "user", "content": "Hello"}]
    ask(url, messages)
    clock.now += 299
    assert ask(url, messages)["cache_read_input_tokens"] > 0  # and the read renews the entry
    clock.now += 299
    assert ask(url, messages)["cache_read_input_tokens"] > 0
    clock.now += 301
    assert ask(url, messages)["cache_read_input_tokens"] == 0
    hour = [{**SYSTEM[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    ask(url, messages, system=hour)
    clock.now += 3000
    assert ask(url, messages, system=hour)["cache_read_input_tokens"] > 0


def test_each_api_key_has_its_own_cache(url):
    messages = [{"role": "user", "content": "Hello"}]
    ask(url, messages, key="k1")
    assert ask(url, messages, key="k2")["cache_read_input_tokens"] == 0
    assert ask(url, messages, key="k1")["cache_read_input_tokens"] > 0


def test_no_breakpoint_no_caching_and_short_prefixes_are_not_cached(url):
    messages = [{"role": "user", "content": "Hello"}]
    plain = [{"type": "text", "text": SYSTEM[0]["text"]}]
    assert ask(url, messages, system=plain)["cache_creation_input_tokens"] == 0
    assert ask(url, messages, system=plain)["cache_read_input_tokens"] == 0
    short = [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]
    ask(url, messages, system=short)
    assert ask(url, messages, system=short)["cache_read_input_tokens"] == 0  # under Sonnet's 1,024 tokens


def test_a_hit_is_found_only_within_twenty_blocks_before_a_breakpoint(url):
    history = [{"role": "user", "content": "Hello"}, turn("a" * 40, marked=True)]
    unmarked = [{"type": "text", "text": SYSTEM[0]["text"]}]  # the one write is the history's
    ask(url, [*history, {"role": "user", "content": "x"}], system=unmarked)

    def later(blocks: int) -> dict:
        extra = [{"type": "text", "text": f"t{i}"} for i in range(blocks - 1)]
        tail = {"role": "user", "content": [*extra, {"type": "text", "text": "end", "cache_control": EPHEMERAL}]}
        return ask(url, [history[0], turn("a" * 40), tail], system=unmarked)

    assert later(20)["cache_read_input_tokens"] > 0
    assert later(21)["cache_read_input_tokens"] == 0


def test_top_level_cache_control_marks_the_last_block(url):
    messages = [{"role": "user", "content": "Hello " * 1500}]
    plain = [{"type": "text", "text": "Be brief."}]
    ask(url, messages, system=plain, extra_body={"cache_control": EPHEMERAL})
    assert ask(url, messages, system=plain, extra_body={"cache_control": EPHEMERAL})["cache_read_input_tokens"] > 1500


def test_the_cache_directive_still_wins(url):
    usage = ask(url, [{"role": "user", "content": "Hi [[fake:cache_read=7]]"}])
    assert usage["cache_read_input_tokens"] == 7


def test_streams_report_the_cache_in_message_start_and_message_delta(url):
    payload = {"model": SONNET, "max_tokens": 20, "stream": True, "system": SYSTEM,
               "messages": [{"role": "user", "content": "Hello"}]}
    headers = {"x-api-key": "k1", "anthropic-version": "2023-06-01"}
    httpx.post(f"{url}/v1/messages", json={**payload, "stream": False}, headers=headers)
    events = dict(parse_sse(httpx.post(f"{url}/v1/messages", json=payload, headers=headers).content))
    assert events["message_start"]["message"]["usage"]["cache_read_input_tokens"] > 2000
    assert events["message_delta"]["usage"]["cache_read_input_tokens"] > 2000


def test_more_than_four_breakpoints_or_one_on_empty_text_is_refused(url):
    five = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        ask(url, [{"role": "user", "content": "Hi"}], system=five)
    empty = [{"role": "user", "content": [{"type": "text", "text": "", "cache_control": EPHEMERAL}]}]
    with pytest.raises(anthropic.BadRequestError):
        ask(url, empty)
    listed = httpx.get(f"{url}/_fake/cache").json()
    assert listed == {"entries": []}
