"""Gemini API codec: `models/{model}:generateContent` and `:streamGenerateContent` to and from the internal
Anthropic Messages shape.

Pure like openai_chat, with which it shares the validation helpers, effort table, `json_schema` strategy
and turn merging of gateway/protocols/_common: plain dicts, one pass, no I/O, clock or randomness. The
model and streaming come from the URL, so the view passes them to `decode_request`. Gemini's REST API is protobuf JSON and accepts camelCase and
snake_case field names alike (google-genai sends a mix of both, e.g. `inlineData.mime_type`), so every
field is read under both names; errors name it in camelCase.

Where the two APIs do not line up:

- Turns: role `function` (the old name for tool results) is `user`; a missing role is `user`. Consecutive
  contents of one role are merged, because Anthropic needs alternating turns (the SDK's chat history
  holds one model content per streamed chunk), and tool results come first in their user turn. Adjacent
  model texts are joined (a streamed chunk may be only whitespace); empty and whitespace-only texts are
  dropped, since Anthropic rejects them. Images (jpeg, png, gif, webp) and PDFs go in as `inlineData`
  (base64; the SDK's URL-safe alphabet is turned back into the standard one) or as `fileData` with an
  https URL that the upstream fetches (we never download). Files API URIs, other media,
  `executableCode`, `codeExecutionResult` and server-side tool parts are a 400 naming the field.
- Tool call ids are optional in Gemini. A `functionCall` without one gets `call_<content>_<part>`; ids
  are sanitised like openai_chat's and made unique. The functionResponses of a user turn answer the
  calls of the model turn before it: by id (as sent) where both have one, the others by name in call order
  (parallel calls to one function pair in order). A response that answers no call, or a call left
  unanswered, is a 400, as in Gemini. A response with an `error` key and no `output` key is an error
  result.
- Thinking is off unless asked for: `thinkingConfig.thinkingBudget` 0 is off, -1 (dynamic) and
  `includeThoughts` alone take openai_chat's `medium` budget, N > 0 is max(N, 1024); `thinkingLevel`
  goes through openai_chat's effort table. As in openai_chat, temperature, topP and topK are dropped
  with thinking, forcing a function (mode ANY) is a 400, and thinking is switched off for a request
  whose last model tool turn lacks its thinking block.
- Thought signatures: Anthropic needs a thinking block back verbatim (text and signature) on the tool
  turn that follows it, but a Gemini client only keeps parts. So every thinking (or redacted thinking)
  block becomes one part `{"text", "thought": true, "thoughtSignature"}` whose signature is a gateway
  token: base64 of the whole block. Its text is the thinking only with `includeThoughts` (else ""),
  so the thoughts stay hidden from `response.text` and the display, yet any client that echoes its
  parts (the SDK chat, ADK) keeps thinking across tool turns. On the way in, a token on any model part
  becomes that block again; thought parts without one and signatures that are not ours (from Gemini
  itself) are dropped, since Anthropic could not verify them.
- `generationConfig`: temperature (0 to 2) is capped at 1, `maxOutputTokens` is `max_tokens` (absent:
  the model's default), whitespace-only `stopSequences` are dropped, `candidateCount` must be 1 and
  `responseModalities` TEXT. `responseMimeType: application/json` adds openai_chat's JSON instruction;
  `responseSchema` (OpenAPI subset with upper-case types, converted to JSON Schema) or
  `responseJsonSchema` use openai_chat's `json_schema` strategy, whose forced tool's input comes back as
  the text. Penalties, seed, logprobs, media resolution, speech settings, `safetySettings`, `labels`
  and unknown fields are accepted and dropped. `cachedContent` is a 400: dropping it would silently
  drop part of the prompt.
- Tools: only `functionDeclarations` (`parameters` converted like `responseSchema`, or
  `parametersJsonSchema` as is; names as Anthropic accepts them); other tool kinds are a 400.
  `functionCallingConfig` mode AUTO/VALIDATED is auto, ANY is any (the named tool when exactly one
  name is allowed), NONE is none. `allowedFunctionNames` restricts the tools forwarded to those names.
- Response: thinking parts as above, text parts, and each `tool_use` as one whole `functionCall` part
  with the Anthropic id (streams buffer its arguments). finishReason is STOP, MAX_TOKENS (max_tokens,
  context window exceeded) or SAFETY (refusal). A candidate always has at least one part (an empty
  text if need be): the SDK's chat drops a turn from its history when any chunk has no parts.
  `usageMetadata.promptTokenCount` counts cache reads and writes; thinking tokens are inside
  `candidatesTokenCount` (Anthropic does not count them apart). `responseId` is the request id.
- Streams: `alt=sse` gives `data: <json>\\r\\n\\r\\n` events, otherwise one JSON array. Every text or
  thought delta is one chunk; the last chunk carries finishReason and usageMetadata. An error after
  the 200 is an `{"error": ...}` object (which the SDK raises), and nothing follows.
"""

from .decode import decode_request
from .encode import encode_response, error_body
from .stream import StreamEncoder

__all__ = ["StreamEncoder", "decode_request", "encode_response", "error_body"]
