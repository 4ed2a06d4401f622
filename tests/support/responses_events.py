"""Reading and checking a Responses API event stream: the SSE framing, the spec's event schemas, the
stream grammar and the openai SDK's accumulator, for the codec's and the end-to-end tests."""

from __future__ import annotations

import orjson
from openai import NOT_GIVEN
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from .openapi import spec_available, validate

SPEC_AVAILABLE = spec_available()
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryTextDeltaEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryTextDoneEvent",
    "response.output_text.annotation.added": "ResponseOutputTextAnnotationAddedEvent",
    "response.custom_tool_call_input.delta": "ResponseCustomToolCallInputDeltaEvent",
    "response.custom_tool_call_input.done": "ResponseCustomToolCallInputDoneEvent",
    "response.web_search_call.in_progress": "ResponseWebSearchCallInProgressEvent",
    "response.web_search_call.searching": "ResponseWebSearchCallSearchingEvent",
    "response.web_search_call.completed": "ResponseWebSearchCallCompletedEvent",
}
LIFECYCLE = {"response.created", "response.in_progress"}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def assert_valid(schema_name: str, instance: object) -> None:
    """Schema check; without the spec file it is skipped, which test_openai_spec_is_present reports."""
    if SPEC_AVAILABLE:
        validate(schema_name, instance)


def sse_events(raw: bytes) -> list[dict]:
    """Split SSE bytes into payloads, checking each `event:` line names its payload's type."""
    assert raw.endswith(b"\n\n")
    payloads = []
    for chunk in raw.split(b"\n\n")[:-1]:
        event_line, data_line = chunk.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: "), chunk
        payload = orjson.loads(data_line[len(b"data: ") :])
        assert payload["type"] == event_line[len(b"event: ") :].decode()
        payloads.append(payload)
    return payloads


def check_stream(events: list[dict], *, full_schema: bool = True) -> None:
    """The stream grammar, the spec schemas and the openai SDK's accumulator, on one stream's events."""
    for event in events:
        assert_valid(EVENT_SCHEMAS[event["type"]], event)
        if full_schema:
            assert_valid("ResponseStreamEvent", event)
    assert_grammar(events)
    state = ResponseStreamState(input_tools=NOT_GIVEN, text_format=NOT_GIVEN)
    for event in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))


def assert_grammar(events: list[dict]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    assert not any(event["type"] in TERMINAL for event in events[:-1])
    lifecycle = [event["response"] for event in events if event["type"] in LIFECYCLE | TERMINAL]
    assert len({response["id"] for response in lifecycle}) == 1
    assert all(response["status"] == "in_progress" and response["output"] == [] for response in lifecycle[:2])

    done_items = []
    open_item = None  # [output_index, item_id, type, text pieces, argument pieces, summary pieces, parts]
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert open_item is None, "items do not interleave"
            assert event["output_index"] == len(done_items)
            item = event["item"]
            assert item["status"] == "in_progress"
            open_item = {"index": event["output_index"], "id": item["id"], "type": item["type"], "text": [],
                         "arguments": [], "summary": [], "parts": [], "annotations": [], "search": []}
            continue
        assert open_item is not None, f"{kind} outside an item"
        assert event["output_index"] == open_item["index"]
        if kind == "response.output_item.done":
            item = event["item"]
            assert item["id"] == open_item["id"] and item["type"] == open_item["type"]
            assert item["status"] in (("completed", "failed") if item["type"] == "web_search_call"
                                      else ("completed", "incomplete"))
            if item["type"] == "message":
                assert open_item["parts"] == ["added", "done"]
                assert [part["text"] for part in item["content"]] == ["".join(open_item["text"])]
                assert item["content"][0]["annotations"] == open_item["annotations"]
            elif item["type"] == "function_call":
                assert open_item["arguments"] and item["arguments"] == "".join(open_item["arguments"])
            elif item["type"] == "custom_tool_call":
                assert open_item["parts"] == ["input done"]
                assert item["input"] == "".join(open_item["arguments"])
            elif item["type"] == "web_search_call":
                assert open_item["search"] in (["in_progress"], ["in_progress", "searching"],
                                               ["in_progress", "searching", "completed"])
                assert (open_item["search"][-1] == "completed") == (item["status"] == "completed")
            elif item["type"] == "local_shell_call":
                assert open_item["parts"] == []
            else:
                assert open_item["parts"] in ([], ["added", "done"])
                assert [part["text"] for part in item["summary"]] == (
                    ["".join(open_item["summary"])] if open_item["parts"] else []
                )
            done_items.append(item)
            open_item = None
            continue
        assert event["item_id"] == open_item["id"]
        if kind == "response.content_part.added":
            assert open_item["type"] == "message" and open_item["parts"] == []
            assert event["content_index"] == 0 and event["part"]["text"] == ""
            open_item["parts"].append("added")
        elif kind == "response.output_text.delta":
            assert open_item["parts"] == ["added"] and event["delta"]
            open_item["text"].append(event["delta"])
        elif kind == "response.output_text.done":
            assert open_item["parts"] == ["added"]
            assert event["text"] == "".join(open_item["text"])
        elif kind == "response.content_part.done":
            assert open_item["parts"] == ["added"]
            assert event["part"]["text"] == "".join(open_item["text"])
            open_item["parts"].append("done")
        elif kind == "response.function_call_arguments.delta":
            assert open_item["type"] == "function_call" and event["delta"]
            open_item["arguments"].append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            assert event["arguments"] == "".join(open_item["arguments"])
        elif kind == "response.output_text.annotation.added":
            assert open_item["parts"] == ["added"] and event["annotation_index"] == len(open_item["annotations"])
            assert 0 <= event["annotation"]["start_index"] < event["annotation"]["end_index"]
            assert event["annotation"]["end_index"] <= len("".join(open_item["text"]))
            open_item["annotations"].append(event["annotation"])
        elif kind == "response.custom_tool_call_input.delta":
            assert open_item["type"] == "custom_tool_call" and open_item["parts"] == [] and event["delta"]
            open_item["arguments"].append(event["delta"])
        elif kind == "response.custom_tool_call_input.done":
            assert open_item["parts"] == [] and event["input"] == "".join(open_item["arguments"])
            open_item["parts"].append("input done")
        elif kind.startswith("response.web_search_call."):
            assert open_item["type"] == "web_search_call"
            open_item["search"].append(kind.rpartition(".")[2])
        elif kind == "response.reasoning_summary_part.added":
            assert open_item["type"] == "reasoning" and open_item["parts"] == []
            open_item["parts"].append("added")
        elif kind == "response.reasoning_summary_text.delta":
            assert open_item["parts"] == ["added"] and event["delta"]
            open_item["summary"].append(event["delta"])
        elif kind == "response.reasoning_summary_text.done":
            assert event["text"] == "".join(open_item["summary"])
        elif kind == "response.reasoning_summary_part.done":
            assert open_item["parts"] == ["added"]
            open_item["parts"].append("done")
        else:
            raise AssertionError(f"unexpected event {kind}")
    assert open_item is None, "every added item is done before the stream ends"
    assert events[-1]["response"]["output"] == done_items
