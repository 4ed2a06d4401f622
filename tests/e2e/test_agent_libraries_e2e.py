"""Agent libraries, unchanged, against the gateway and the fake upstream (issue 12).

The OpenAI Agents SDK (Responses and Chat Completions models) and LangChain (`langchain-openai`,
`langchain-anthropic`) are pointed at the gateway with an `sk_cdx_` key and driven as their users do:
a plain call, a stream, a function-tool round trip (the fake's `[[fake:tool]]` directive makes it call
the first declared tool) and structured output. Each test checks what the library hands back and the
usage rows written for the key against the fake's request log: one `ok` row per upstream request, with
the tokens the fake reported for that request body (recomputed with the fake's own functions).
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from pydantic import BaseModel

from billing.models import UsageEvent
from fakes.anthropic import build_reply, parse_directives, parse_request
from tests.support.e2e import marker, upstream_request

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"


class Weather(BaseModel):
    city: str
    temperature: int


def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def fake_usage(body: dict) -> tuple[int, int]:
    """(input_tokens, output_tokens) the fake answered `body` with (its answers are deterministic)."""
    prompt = parse_request(body)
    usage = build_reply(prompt, parse_directives(prompt.directive_text)).usage
    return usage["input_tokens"], usage["output_tokens"]


def check_metered(fake_upstream: str, persona, tag: str, *, requests: int, stream: bool) -> list[dict]:
    """The fake got `requests` requests mentioning `tag`, all answered, each metered once for the key as
    `ok` with the tokens the fake reported (reads the database: the test needs `db_access`). Returns the
    upstream request bodies, oldest first."""
    deadline = time.monotonic() + 5
    while True:
        entries = [e for e in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(e["body"])]
        rows = list(UsageEvent.objects.filter(api_key=persona.api_key).order_by("created_at", "id"))
        finished = all(e["outcome"] != "in_progress" for e in entries)
        if (len(entries) >= requests and finished and len(rows) >= requests) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(e["outcome"], e["status"], e["stream"]) for e in entries] == [("completed", 200, stream)] * requests
    assert [(r.status, r.http_status, r.stream) for r in rows] == [("ok", 200, stream)] * requests
    assert [(r.input_tokens, r.output_tokens) for r in rows] == [fake_usage(e["body"]) for e in entries]
    return [e["body"] for e in entries]


def check_tool_turns(first: dict, second: dict, name: str, arguments: dict) -> str:
    """Upstream, the first request declared tool `name` alone and the second replays its call with
    `arguments` followed by the call's result. Returns the call's id."""
    assert [t["name"] for t in first["tools"]] == [name]
    tool_use = second["messages"][1]["content"][-1]
    assert (tool_use["type"], tool_use["name"], tool_use["input"]) == ("tool_use", name, arguments)
    result = second["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"]
    return tool_use["id"]


# --------------------------------------------------------------------------------------------------
# OpenAI Agents SDK
# --------------------------------------------------------------------------------------------------

try:
    import agents
except ModuleNotFoundError:  # the `test` extra installs it; without it these tests say so instead of passing
    agents = None


@pytest.fixture(params=["responses", "chat_completions"])
def run_agent(request, gateway, persona):
    """Runs an Agents SDK agent on the gateway: `run_agent(text, stream=False, **agent_fields)` builds
    the Agent with a model of either kind on an AsyncOpenAI client pointed at /v1, runs it in a loop of
    its own (the client closed before the loop) and returns the run result and, streamed, the text deltas."""
    import openai

    if agents is None:
        pytest.skip("openai-agents is not installed (the `test` extra)")
    agents.set_tracing_disabled(True)  # the trace exporter would call OpenAI's own servers
    model_class = agents.OpenAIResponsesModel if request.param == "responses" else agents.OpenAIChatCompletionsModel

    async def run(text: str, stream: bool, fields: dict):
        async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0) as client:
            agent = agents.Agent(name="assistant", model=model_class(model=HAIKU, openai_client=client), **fields)
            if not stream:
                return await agents.Runner.run(agent, text), []
            result = agents.Runner.run_streamed(agent, text)
            deltas = [event.data.delta async for event in result.stream_events()
                      if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"]
            return result, deltas

    return lambda text, stream=False, **fields: asyncio.run(run(text, stream, fields))


def reported_usage(result) -> list[tuple[int, int]]:
    return [(response.usage.input_tokens, response.usage.output_tokens) for response in result.raw_responses]


def test_agents_sdk_plain_run(run_agent, fake_upstream, persona, db_access):
    tag = marker()
    result, _ = run_agent(f"Hi {tag}", instructions="Be brief.")
    assert result.final_output == f"Hello from the fake upstream. You said: Hi {tag}"
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=False)
    assert "Be brief." in str(body["system"])
    assert reported_usage(result) == [fake_usage(body)]


def test_agents_sdk_streamed_run(run_agent, fake_upstream, persona, db_access):
    tag = marker()
    # Usage in a Chat Completions stream is opt-in on a base_url other than OpenAI's.
    result, deltas = run_agent(f"[[fake:words=30]] {tag}", stream=True,
                               model_settings=agents.ModelSettings(include_usage=True))
    assert len(deltas) > 1 and "".join(deltas) == result.final_output and len(result.final_output.split()) == 30
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=True)
    assert reported_usage(result) == [fake_usage(body)]


def test_agents_sdk_function_tool_round_trip(run_agent, fake_upstream, persona, db_access):
    calls = []

    @agents.function_tool
    def weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return get_weather(city)

    tag = marker()
    result, _ = run_agent(f"[[fake:tool]] weather please {tag}", tools=[weather])
    assert calls == ["example"]
    assert result.final_output == "Tool results received: sunny in example"
    [call] = [item.raw_item for item in result.new_items if item.type == "tool_call_item"]
    assert (call.name, json.loads(call.arguments)) == ("weather", {"city": "example"})
    first, second = check_metered(fake_upstream, persona, tag, requests=2, stream=False)
    assert check_tool_turns(first, second, "weather", {"city": "example"}) == call.call_id
    assert reported_usage(result) == [fake_usage(first), fake_usage(second)]


def test_agents_sdk_structured_output(run_agent, fake_upstream, persona, db_access):
    tag = marker()
    result, _ = run_agent(f"weather as JSON {tag}", output_type=Weather)
    assert result.final_output == Weather(city="example", temperature=1)
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=False)
    assert reported_usage(result) == [fake_usage(body)]


# --------------------------------------------------------------------------------------------------
# LangChain
# --------------------------------------------------------------------------------------------------


@pytest.fixture(params=["openai", "openai_responses", "anthropic", "anthropic_root"])
def chat_model(request, gateway, persona):
    """A LangChain chat model pointed at the gateway: ChatOpenAI on Chat Completions or (as it switches
    to for some features) the Responses API; ChatAnthropic at /anthropic or at the root."""
    if request.param.startswith("openai"):
        langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
        # stream_usage: usage in a stream is opt-in for ChatOpenAI on a base_url of its own.
        return langchain_openai.ChatOpenAI(model=HAIKU, base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0,
                                           stream_usage=True, use_responses_api=request.param == "openai_responses")
    langchain_anthropic = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is not installed")
    base_url = gateway if request.param == "anthropic_root" else f"{gateway}/anthropic"
    return langchain_anthropic.ChatAnthropic(model=HAIKU, base_url=base_url, api_key=persona.key, max_retries=0)


def token_counts(message) -> tuple[int, int]:
    return message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]


def test_langchain_invoke(chat_model, fake_upstream, persona, db_access):
    tag = marker()
    message = chat_model.invoke([("system", "Be brief."), ("human", f"Hi {tag}")])
    assert message.text == f"Hello from the fake upstream. You said: Hi {tag}"
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=False)
    assert "Be brief." in str(body["system"])
    assert token_counts(message) == fake_usage(body)


def test_langchain_stream(chat_model, fake_upstream, persona, db_access):
    tag = marker()
    chunks = list(chat_model.stream(f"[[fake:words=30]] {tag}"))
    text = "".join(chunk.text for chunk in chunks)
    assert len([c for c in chunks if c.text]) > 1 and len(text.split()) == 30
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=True)
    assert token_counts(sum(chunks[1:], chunks[0])) == fake_usage(body)


def test_langchain_tool_round_trip(chat_model, fake_upstream, persona, db_access):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    weather = tool(get_weather)
    model = chat_model.bind_tools([weather])
    tag = marker()
    history = [HumanMessage(f"[[fake:tool]] weather please {tag}")]
    called = model.invoke(history)
    [call] = called.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "example"})
    history += [called, ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = model.invoke(history)
    assert answer.text == "Tool results received: sunny in example" and not answer.tool_calls
    first, second = check_metered(fake_upstream, persona, tag, requests=2, stream=False)
    assert check_tool_turns(first, second, "get_weather", {"city": "example"}) == call["id"]
    assert [token_counts(message) for message in (called, answer)] == [fake_usage(first), fake_usage(second)]


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_structured_output(chat_model, method, fake_upstream, persona, db_access):
    tag = marker()
    out = chat_model.with_structured_output(Weather, method=method, include_raw=True).invoke(f"weather as JSON {tag}")
    assert out["parsed"] == Weather(city="example", temperature=1) and out["parsing_error"] is None
    [body] = check_metered(fake_upstream, persona, tag, requests=1, stream=False)
    assert token_counts(out["raw"]) == fake_usage(body)


def test_langchain_anthropic_betas_reach_the_upstream(gateway, fake_upstream, persona, db_access):
    langchain_anthropic = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is not installed")
    model = langchain_anthropic.ChatAnthropic(model=HAIKU, base_url=f"{gateway}/anthropic", api_key=persona.key,
                                              max_retries=0, betas=["context-1m-2025-08-07"])
    tag = marker()
    assert model.invoke(f"Hi {tag}").text == f"Hello from the fake upstream. You said: Hi {tag}"
    check_metered(fake_upstream, persona, tag, requests=1, stream=False)
    assert upstream_request(fake_upstream, tag)["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
