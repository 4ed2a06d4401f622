"""The codec toolkit's shape: every codec is a `Codec`, every stream encoder has the one base, and no codec
reaches into another's internals (what they share is gateway/protocols/_common)."""

from __future__ import annotations

import ast

import pytest

from gateway.core import ResponseContext
from gateway.protocols import anthropic_messages, gemini, openai_chat, openai_responses
from gateway.protocols._common.codec import Codec, Encoder
from gateway.protocols._common.stream import StreamEncoderBase
from tests.support.env import ROOT

CODECS = [anthropic_messages, gemini, openai_chat, openai_responses]
PROTOCOLS = ROOT / "gateway" / "protocols"


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.__name__.rsplit(".", 1)[-1])
def test_each_codec_is_a_codec_and_its_encoder_has_the_shared_base(codec):
    assert isinstance(codec, Codec)
    encoder = codec.StreamEncoder(ResponseContext(request_id="req_1", created=0, model="m"))
    assert isinstance(encoder, StreamEncoderBase) and isinstance(encoder, Encoder)


def _imported_codec(node: ast.ImportFrom, in_package: bool) -> str | None:
    """The gateway/protocols member (codec or `_common`) an import reads from; None for a sibling or outside."""
    if node.level == 0:
        module = node.module or ""
        return module.split(".")[2] if module.startswith("gateway.protocols.") else None
    if node.level == 1 and in_package:
        return None  # a sibling module of the same codec package
    return (node.module or "").split(".")[0] or None


def test_no_codec_imports_another_codecs_private_names():
    for path in PROTOCOLS.rglob("*.py"):
        in_package = path.parent != PROTOCOLS
        owner = path.parent.name if in_package else path.stem
        if owner == "_common":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _imported_codec(node, in_package)
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert source in (None, owner, "_common") or not private, (
                    f"{path.relative_to(PROTOCOLS)} imports {private} from {source}")


class _Recorder(StreamEncoderBase):
    __slots__ = ()

    def on_block_delta(self, event: dict) -> bytes:
        return b"delta"

    def on_other(self, event: dict) -> bytes:
        return b"other:" + str(event.get("type")).encode()


def test_the_base_dispatches_by_event_type_and_sends_the_rest_to_on_other():
    encoder = _Recorder()
    assert encoder.feed({"type": "content_block_delta"}) == b"delta"
    assert encoder.feed({"type": "message_start"}) == b"other:message_start"  # not overridden: on_other
    assert encoder.feed({"type": "ping"}) == b"other:ping"
    assert encoder.feed({}) == b"other:None"
    encoder._closed = True
    assert encoder.feed({"type": "content_block_delta"}) == b""
