"""Jina's paths for its SDKs and clients: `/jina/v1/embeddings` and `/jina/v1/rerank`, the OpenAI API's
operations with OpenAI's keys and errors."""

from __future__ import annotations

from ninja import Router

from .base import Protocol, add_embedding_operations, add_unknown_route


def router(protocol: Protocol) -> Router:
    router = Router(auth=protocol.key)
    add_embedding_operations(router)
    add_unknown_route(router)
    return router

