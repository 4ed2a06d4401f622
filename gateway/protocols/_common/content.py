"""Anthropic content blocks and turns, as every codec that translates into the Messages shape builds them."""

from __future__ import annotations

from typing import Any

from gateway.core import invalid

from .checks import missing, wrong_type


IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


class Turn:
    """An Anthropic message being assembled from consecutive client messages of one role."""

    __slots__ = ("role", "results", "blocks")

    def __init__(self, role: str) -> None:
        self.role = role
        self.results: list[dict] = []  # tool_result blocks, which Anthropic wants before anything else
        self.blocks: list[dict] = []

    def as_message(self) -> dict:
        return {"role": self.role, "content": self.results + self.blocks if self.results else self.blocks}


def append_blocks(turns: list[Turn], role: str, blocks: list[dict], *, results: bool = False) -> None:
    # Anthropic rejects empty and whitespace-only text blocks; such a text says nothing anyway.
    blocks = [block for block in blocks if block["type"] != "text" or not block["text"].isspace()]
    if not blocks:
        return
    if not turns or turns[-1].role != role:
        turns.append(Turn(role))
    turn = turns[-1]
    (turn.results if results else turn.blocks).extend(blocks)


def strip_prefill(turns: list[Turn]) -> None:
    """Anthropic rejects a final assistant message ending in whitespace: strip its trailing text blocks."""
    if not turns or turns[-1].role != "assistant":
        return
    blocks = turns[-1].blocks
    while blocks and blocks[-1]["type"] == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1]["text"] = text
            break
        blocks.pop()
    if not blocks:
        turns.pop()


def text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def image_url_block(url: str, param: str) -> dict:
    """An Anthropic image block for a data URL or an http(s) URL at `param`."""
    scheme = url[:8].lower()
    if scheme.startswith("data:"):
        media_type, data = parse_data_url(url, param)
        if media_type == "image/jpg":
            media_type = "image/jpeg"
        if media_type not in IMAGE_MEDIA_TYPES:
            raise invalid(
                f"Invalid '{param}': unsupported image type '{media_type}'. "
                "Supported types are image/jpeg, image/png, image/gif and image/webp.",
                param,
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    # Passed on as a URL for upstream to fetch: downloading it here would be an SSRF hole and add latency.
    if scheme.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(
        f"Invalid '{param}': expected an http(s) URL or a base64 data URL ('data:image/png;base64,...').", param
    )


def pdf_data_block(data_url: Any, param: str) -> dict:
    """A `file_data` PDF data URL (chat's `file` part and the Responses API's `input_file`) as a document."""
    if not isinstance(data_url, str):
        raise missing(param) if data_url is None else wrong_type(param, "a string", data_url)
    media_type, data = parse_data_url(data_url, param)
    if media_type != "application/pdf":
        raise invalid(
            f"Invalid '{param}': unsupported file type '{media_type}'. Only application/pdf is supported.", param
        )
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """Split `data:<media type>;base64,<data>` into the lower-cased media type and the data."""
    header, comma, data = url.partition(",")
    media_type, _, encoding = header[5:].partition(";")
    if not comma or not data or encoding.lower() != "base64":
        raise invalid(f"Invalid '{param}': expected a base64 data URL ('data:<media type>;base64,<data>').", param)
    return media_type.strip().lower(), data
