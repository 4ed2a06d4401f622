"""The one shape of every stream encoder: Anthropic stream events in, the client protocol's bytes out.

`feed` is on the per-event hot path, so it dispatches through a table of plain functions built once per
class and held in a slot (one dict subscript and one call per event; no bound method, closure or tuple): a
subclass implements the `on_*` handlers it needs, and every other event type (ping, events the API adds
later) goes to `on_other`. Measured with bench/codec_feed.py: as fast as the if-chains it replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from gateway.core import GatewayError, Usage

# Anthropic event type -> handler method name.
EVENT_HANDLERS = {
    "content_block_delta": "on_block_delta",
    "content_block_start": "on_block_start",
    "content_block_stop": "on_block_stop",
    "message_start": "on_message_start",
    "message_delta": "on_message_delta",
    "message_stop": "on_message_stop",
}


class StreamEncoderBase:
    """Turns one upstream answer's Anthropic stream events into SSE (or other) bytes for one protocol.

    After `finish` or `fail` (or whatever a subclass decides ends its stream) `_closed` is set and every
    call returns b"". `content_type` is what the response is sent as.
    """

    __slots__ = ("_closed", "_dispatch")
    content_type = "text/event-stream"
    _HANDLERS: ClassVar[dict[Any, Callable[[Any, dict], bytes]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = StreamEncoderBase.__dict__
        # Every known type has an entry (its handler, else `on_other`): only ping and unknown types miss.
        cls._HANDLERS = {kind: getattr(cls, name) if getattr(cls, name) is not base[name] else cls.on_other
                         for kind, name in EVENT_HANDLERS.items()}

    def __init__(self) -> None:
        self._closed = False
        self._dispatch = self._HANDLERS  # a slot reads faster than a class attribute on Python 3.11

    def feed(self, event: dict) -> bytes:
        """Zero or more encoded chunks for one Anthropic event."""
        if self._closed:
            return b""
        try:
            handler = self._dispatch[event["type"]]
        except KeyError:  # ping, an event type without a handler, or none at all
            return self.on_other(event)
        return handler(self, event)

    def finish(self, usage: Usage) -> bytes:
        """The end of the stream after message_stop, with the final usage."""
        raise NotImplementedError

    def fail(self, error: GatewayError) -> bytes:
        """An error after the 200, in the protocol's in-stream error shape; nothing follows it."""
        raise NotImplementedError

    # Handlers, called by `feed` only. The base ones are never in the table: an event type whose handler
    # a subclass does not override goes straight to `on_other`, with no call in between.

    def on_block_delta(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_block_start(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_block_stop(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_message_start(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_message_delta(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_message_stop(self, event: dict) -> bytes:
        return self.on_other(event)

    def on_other(self, event: dict) -> bytes:
        """Ping and event types without a handler: nothing, unless the protocol relays them."""
        return b""
