"""The Anthropic API: `/anthropic/v1/...`, and `/v1/messages` (+ `/count_tokens`) for an Anthropic SDK
whose `base_url` is our root (its `/v1/models` is the OpenAI route, see gateway/api/openai.py); its Admin
API's usage and cost reports under `/v1/organizations/...` (and `/anthropic/v1/organizations/...`)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from ninja import Router

from ..core import GatewayError, invalid
from ..pipeline import count_tokens, json_response, parse_json_body, serve
from ..protocols import anthropic_messages
from ..selectors import catalog_get
from . import admin_usage, batches
from .base import Protocol, add_unknown_route


def _betas(request) -> tuple[str, ...]:
    """The request's `anthropic-beta` flags, forwarded unless the operator blocks one (the upstream
    judges the rest: a client's newer betas work without a gateway release)."""
    flags = tuple(flag.strip() for flag in request.headers.get("anthropic-beta", "").split(",") if flag.strip())
    for flag in flags:
        if flag in settings.ANTHROPIC_BLOCKED_BETAS:
            raise invalid(f"anthropic-beta: '{flag}' is not enabled on this gateway.", "anthropic-beta")
    return flags


def router(protocol: Protocol) -> Router:
    """The whole API, under /anthropic/v1."""
    router = root_router(protocol)

    @router.get("/models")
    async def list_models(request):
        return json_response(protocol.model_list(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{path:model_id}")
    async def retrieve_model(request, model_id: str):
        return json_response(protocol.model(await catalog_get(), model_id, request.auth.allowed_models))

    add_unknown_route(router)
    return router


def root_router(protocol: Protocol) -> Router:
    """Only the message routes, for an Anthropic SDK whose `base_url` is our root (no catch-all: the OpenAI
    API's answers the rest of /v1)."""
    router = Router(auth=protocol.key)

    @router.post("/messages")
    async def messages(request):
        return await serve(request, codec=anthropic_messages, endpoint="messages", betas=_betas(request))

    @router.post("/messages/count_tokens")
    async def messages_count_tokens(request):
        betas = _betas(request)
        ireq = anthropic_messages.decode_count_request(parse_json_body(request), betas=betas)
        return json_response({"input_tokens": await count_tokens(request, ireq)})

    batches.add_anthropic_operations(router)
    return router


# Anthropic's Admin API under /v1/organizations: the usage and cost reports, the API keys.
def admin_router(protocol: Protocol) -> Router:
    return admin_usage.admin_router((
        ("/usage_report/messages", admin_usage.anthropic_usage),
        ("/cost_report", admin_usage.anthropic_costs),
        ("/api_keys", admin_usage.anthropic_api_keys),
    ))


def render(request, error: GatewayError, request_id: str) -> HttpResponse:
    return json_response(anthropic_messages.error_body(error, request_id), request_id=request_id,
                         status=anthropic_messages.error_status(error))

