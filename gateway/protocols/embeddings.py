"""Embeddings (OpenAI shape, Jina's extras) and rerank (Jina shape) requests: validated, then passed on.

Both are the same wire format upstream (OpenAI-compatible and Jina-compatible servers), so there is
nothing to translate: each decoder checks the body, names the first bad field in a 400, and returns
the model name, the body to forward (without `model`, which routing fills in per deployment) and the
texts whose length estimates the input tokens to reserve. Pure module.
"""

from __future__ import annotations

from typing import Any

from gateway.core import invalid

_ENCODINGS = ("float", "base64")
_MAX_INPUTS = 2048  # OpenAI's limit per request


def decode_embeddings(body: Any) -> tuple[str, dict, list[str]]:
    model = _model(body)
    value = body.get("input")
    if value is None:
        raise invalid("Missing required parameter: 'input'.", "input")
    if isinstance(value, str):
        items: list = [value]
    elif isinstance(value, list) and value and all(_is_int(token) for token in value):
        items = [value]  # one token array
    elif isinstance(value, list) and value:
        items = value
    else:
        raise invalid("'input' must be a string, an array of strings, or an array of token arrays (not empty).",
                      "input")
    if len(items) > _MAX_INPUTS:
        raise invalid(f"'input' holds {len(items)} items; the limit is {_MAX_INPUTS}.", "input")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise invalid(f"'input[{i}]' is empty.", f"input[{i}]")
            texts.append(item)
        elif isinstance(item, list) and item and all(_is_int(token) and token >= 0 for token in item):
            texts.append("x" * 4 * len(item))  # a token array: its length is its token count
        else:
            raise invalid(f"'input[{i}]' must be a non-empty string or array of token ids.", f"input[{i}]")
    encoding = body.get("encoding_format", "float")
    if encoding not in _ENCODINGS:
        raise invalid(f"'encoding_format' must be 'float' or 'base64', not {encoding!r}.", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise invalid("'dimensions' must be a positive integer.", "dimensions")
    for name in ("user", "task"):
        if name in body and not isinstance(body[name], str):
            raise invalid(f"'{name}' must be a string.", name)
    return model, {key: value for key, value in body.items() if key != "model"}, texts


def decode_rerank(body: Any) -> tuple[str, dict, list[str]]:
    model = _model(body)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise invalid("'query' must be a non-empty string.", "query")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise invalid("'documents' must be a non-empty array of strings or {\"text\": ...} objects.", "documents")
    texts = [query]
    for i, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise invalid(f"'documents[{i}]' must be a string or an object with a string 'text'.", f"documents[{i}]")
        texts.append(text)
    top_n = body.get("top_n")
    if top_n is not None and (not _is_int(top_n) or top_n < 1):
        raise invalid("'top_n' must be a positive integer.", "top_n")
    if "return_documents" in body and not isinstance(body["return_documents"], bool):
        raise invalid("'return_documents' must be a boolean.", "return_documents")
    return model, {key: value for key, value in body.items() if key != "model"}, texts


def input_tokens(result: dict) -> int:
    """The tokens an upstream reports for an embeddings or rerank call (OpenAI: prompt, Jina: total)."""
    usage = result.get("usage") if isinstance(result, dict) else None
    if not isinstance(usage, dict):
        return 0
    for name in ("prompt_tokens", "total_tokens"):
        if _is_int(usage.get(name)):
            return usage[name]
    return 0


def _model(body: Any) -> str:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("Missing required parameter: 'model'.", "model")
    return model


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
