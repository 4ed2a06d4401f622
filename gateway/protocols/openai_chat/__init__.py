"""OpenAI Chat Completions codec: `/v1/chat/completions` to and from the internal Anthropic Messages shape.

Pure and on the hot path: plain dicts, one pass, no I/O, clock or randomness (ids and timestamps come
from `ResponseContext`). Client data is never deep-copied: tool and response schemas are forwarded
by reference.

Where the two APIs do not line up:

- `response_format`: `text` adds nothing. `json_object` appends an instruction to the system prompt
  to answer with one JSON object and nothing else. `json_schema` uses a forced tool when the request
  has no tools, thinking is off and the schema describes an object. The codec adds a tool named after
  `json_schema.name` (sanitised, default `json_response`) with the schema as its `input_schema`, and
  forces it with `tool_choice: {type: tool}`. The tool name goes into `options["json_tool"]`. On the
  way back, that tool call's input becomes the message `content` as compact JSON with finish_reason
  "stop". In streams, its `input_json_delta` fragments become content deltas. In every other case
  the schema goes into a system instruction as best effort: client tools present (a forced tool would
  shadow them), thinking on (Anthropic forbids forced tools with thinking), or a schema whose root is
  not an object (a tool input must be one).
- Thinking: a `thinking` object in the body (`enabled` with `budget_tokens`, or `disabled`) wins over
  `reasoning_effort` (budgets in `EFFORT_BUDGETS`; `none` means off). With thinking on,
  temperature and top_p are dropped (Anthropic requires their defaults), and a tool_choice that forces
  a tool is a 400. Anthropic rejects a thinking request whose last assistant turn used a tool without
  its signed thinking block. When the client did not send back `reasoning_content` and
  `reasoning_signature` on that turn, thinking is switched off for the request instead of failing it.
- Returned thinking goes to the extension fields `reasoning_content` (the text) and
  `reasoning_signature` (the last signature). Send both back on the assistant message to keep
  thinking across tool turns.
- `stop`: whitespace-only sequences are dropped because Anthropic rejects them. If none are left, the
  field is omitted, so those sequences are not honoured.
- A trailing assistant message (prefill) is forwarded with its trailing whitespace removed, because
  Anthropic always rejects that whitespace. Whether the model supports prefill is for upstream to say.
- Tools: `function` tools are Anthropic tools. `custom` (freeform) tools are Anthropic tools whose one
  string property `input` holds the raw input, the grammar (lark, regex) in the description since
  Anthropic cannot enforce it; their calls come back as `custom` tool calls (`options["custom_tools"]`
  names them), are sent back the same way and can be forced with `tool_choice` `custom`. Streaming with
  a custom tool is a 400: `chat.completion.chunk` tool calls can only be functions. Any other tool type
  is a 400 naming `tools[k].type`. `web_search_options` is dropped like the other unknown fields.
- Fields with no Anthropic equivalent (penalties, seed, logprobs, user, metadata, ...) and unknown
  fields are accepted and dropped, so only `ANTHROPIC_REQUEST_FIELDS` ever reach a provider.
"""

from gateway.protocols._common.structured import JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION

from .decode import decode_request
from .encode import encode_response, error_body
from .stream import StreamEncoder

__all__ = ["JSON_OBJECT_INSTRUCTION", "JSON_SCHEMA_INSTRUCTION", "StreamEncoder", "decode_request", "encode_response",
           "error_body"]
