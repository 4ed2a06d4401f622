"""OpenAI Responses codec: `POST /v1/responses` to and from the internal Anthropic Messages shape.

Pure like openai_chat, with which it shares the validation helpers, effort table and `json_schema`
strategy of gateway/protocols/_common, so that both OpenAI protocols accept, reject and translate alike:
plain dicts, one pass, no I/O, clock or randomness. Ids derive from `ResponseContext.request_id` (`req_<hex>`): the response is `resp_<hex>`
and output item n is `rs_<hex>_<n>`, `msg_<hex>_<n>` or `fc_<hex>_<n>`, so a streamed answer, its
final `response.completed` object and `encode_response` of the same message all agree.

Storage is the server's: `decode_request` puts what it needs into `InternalRequest.options` (`store`,
`metadata`, `previous_response_id`, `conversation`, `instructions`, and `input_items`, the request's
input normalised to the shape `GET /v1/responses/{id}/input_items` returns), plus the request fields
that every Response object echoes. Earlier turns (a previous response, a conversation) come in as
Anthropic messages through `history=` and are merged with the new input before translation.

Where the two APIs do not line up:

- Input items: `message` items (with or without `type`), `function_call` and `function_call_output`
  become Anthropic text, `tool_use` and `tool_result` blocks; call ids are sanitised the same way on
  both sides and tool results come first in their user turn. System and developer messages join
  `instructions` (first) in `system`. `item_reference` items and uploaded files (`file_id`) are a 400
  naming the field. The tool items of the table below are sent back the same way.
- Tools, by `type` (`tools[k].type`). Calls come back by their Anthropic tool name through
  `options["tool_calls"]` (Anthropic name -> type, name, namespace), never by parsing a name.

  | type             | sent to Claude as                     | a call comes back as                          |
  |------------------|---------------------------------------|-----------------------------------------------|
  | function         | a tool of that name                   | `function_call`                               |
  | namespace        | each member a tool `<ns>__<name>` (1) | `function_call` / `custom_tool_call` + `namespace` |
  | custom           | a tool with one string `input` (2)    | `custom_tool_call`                            |
  | local_shell      | a tool `local_shell` (3)              | `local_shell_call`                            |
  | web_search (4)   | Anthropic's `web_search_20250305` (5) | `web_search_call`, `url_citation` annotations |
  | file_search, code_interpreter, image_generation, computer*, mcp, tool_search, shell, apply_patch, |
  | programmatic_tool_calling: a 400 naming `tools[k].type` and what to do instead (6)                |

  (1) Characters outside `[a-zA-Z0-9_-]` become `_`; at most 128. Each member's description gets the
  namespace's. The call item has the member's own name, as Codex routes by name and namespace; a
  `function_call` (or `custom_tool_call`) sent back with `namespace` is flattened the same way.
  (2) The raw input, not JSON; a grammar (lark, regex) goes in the description, as Anthropic cannot
  enforce one. Streamed, `response.custom_tool_call_input.delta` carries the whole input when the call
  ends. Sent back: `custom_tool_call`, `custom_tool_call_output`.
  (3) Taking `command`, `working_directory`, `timeout_ms`, `env`; the spec has no argument deltas for
  it, so its `exec` action is empty in `output_item.added` and complete in `output_item.done`. Sent
  back: `local_shell_call`, and `local_shell_call_output` (the call named by `id` or `call_id`) or
  `function_call_output`.
  (4) Also `web_search_2025_08_26`, `web_search_preview`, `web_search_preview_2025_03_11`.
  (5) `filters.allowed_domains` and `user_location` are kept; `search_context_size` and
  `external_web_access` have no equivalent and are dropped. Each search is a `web_search_call` (action
  `search` with `query`, `queries`, `sources`; `failed` on an error result); text citing results gets
  `url_citation` annotations over that text block. A `web_search_call` sent back is kept in
  `input_items` but not sent: Anthropic takes a search back only with its encrypted results, which the
  item lacks, and the answer's text stays. A stored turn (previous_response_id, conversation) replays
  the search in full.
  (6) They run on OpenAI's side, or are typed tools Claude has no counterpart for. None is optional to
  a client that declares it, so dropping one would hide a broken setup.

  `tool_choice` may force a function (a namespace member by its own name when that is unambiguous, or
  by its flattened one), a custom tool, or `web_search_preview`; other hosted tools and
  `allowed_tools` are a 400. The echoed `tools` are the client's objects (functions normalised).
- Thinking: a thinking block becomes a `reasoning` item whose one `summary_text` part is the whole
  thinking text and whose `encrypted_content` is the block's signature (a redacted block gives
  `redacted_thinking:<data>` and no summary). Both are always returned, not only with `include`, since
  Anthropic needs them back unchanged. A `reasoning` input item with `encrypted_content` becomes that
  thinking block again; without it, it is dropped. Otherwise openai_chat's rules apply: `reasoning.effort`
  picks a budget from its table, temperature and top_p are dropped, forcing a tool is a 400, and thinking
  is switched off when the last assistant tool turn lacks its thinking block. Anthropic does not count
  thinking tokens apart: `reasoning_tokens` is 0 and they are inside `output_tokens`.
- Output items: consecutive text blocks form one `message` item with one `output_text` part; each
  `tool_use` is a call item (see the table) whose `call_id` is the Anthropic tool id; a
  `server_tool_use` and its `web_search_tool_result` are one `web_search_call`. An item is closed when
  the next one starts or the message ends, so that on a cut-off answer the last item can be marked
  `incomplete` (a cut-off search `failed`: its statuses have no `incomplete`). Block types we cannot
  render (other server tools, MCP blocks, ...) are left out, as are citations other than web search
  results. Anthropic's `usage.server_tool_use.web_search_requests` has no Responses counterpart.
- Status: stop_reason `max_tokens` or `model_context_window_exceeded` gives `incomplete` with reason
  `max_output_tokens`, `refusal` gives `incomplete` with `content_filter`; anything else `completed`.
  A failure after the 200 closes the open item as `incomplete` and ends with `response.failed`.
- `text.format` follows openai_chat's `response_format` strategy (`json_schema` as a forced tool when
  possible, whose input then comes back as the message text). `max_output_tokens` is `max_tokens`.
- No `completed_at` (it needs a clock). Fields with no Anthropic equivalent (`include`, `user`,
  `truncation`, `service_tier`, `prompt_cache_key`, ...) and unknown fields are accepted and dropped;
  `background: true` and `prompt` templates are a 400.
"""

from .decode import (LOCAL_SHELL_TOOL, REDACTED_THINKING_PREFIX, WEB_SEARCH_TOOL, decode_input_items, decode_request,
                     namespaced_name)
from .encode import encode_response, error_body, response_to_items
from .stream import StreamEncoder

__all__ = ["LOCAL_SHELL_TOOL", "REDACTED_THINKING_PREFIX", "WEB_SEARCH_TOOL", "StreamEncoder", "decode_input_items",
           "decode_request", "encode_response", "error_body", "namespaced_name", "response_to_items"]
