"""What the request path takes from a codec (gateway.pipeline.serve, the API's error renderers).

A codec package (`gateway.protocols.openai_chat`, ...) satisfies `Codec` as it is: a module is checked
against a Protocol by its attributes, so the codecs stay plain modules and need no registration here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.core import GatewayError, InternalRequest, ResponseContext, Usage


@runtime_checkable
class Encoder(Protocol):
    """One stream's encoder (see `StreamEncoderBase`); a Gemini JSON-array stream also sets `content_type`."""

    def feed(self, event: dict) -> bytes: ...

    def finish(self, usage: Usage) -> bytes: ...

    def fail(self, error: GatewayError) -> bytes: ...


@runtime_checkable
class Codec(Protocol):
    """A client protocol's translation to and from the internal Anthropic Messages shape.

    `decode_request(body, *, request_id, **route)` takes what the protocol carries outside the body as
    keywords (Gemini's model and stream flag from the URL, Anthropic's beta flags), so its signature is
    the codec's own; it raises a 400 `GatewayError` naming the field.
    """

    decode_request: Callable[..., InternalRequest]
    StreamEncoder: Callable[[ResponseContext], Encoder]

    def encode_response(self, message: dict, ctx: ResponseContext) -> dict: ...

    def error_body(self, error: GatewayError) -> dict: ...
