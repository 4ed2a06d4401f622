"""Jina's paths for its SDKs and clients: `/jina/v1/embeddings` and `/jina/v1/rerank`, the OpenAI API's
operations with OpenAI's keys and errors."""

from __future__ import annotations

from ninja import Router

from ..auth import OPENAI_KEY
from .base import add_embedding_operations, add_unknown_route, build
from .openai import render_openai


def jina_router() -> Router:
    router = Router(auth=OPENAI_KEY)
    add_embedding_operations(router)
    add_unknown_route(router)
    return router


jina_api = build("jina", jina_router(), render_openai)
