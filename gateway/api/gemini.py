"""The Gemini API: `/gemini/v1beta/models/{model}:{method}`, and `/gemini/v1/...` (google-genai's default
with a `base_url`)."""

from __future__ import annotations

from django.http import HttpResponse
from ninja import Router

from ..core import GatewayError
from ..pipeline import count_tokens, json_response, parse_json_body, serve
from ..protocols import gemini
from ..selectors import catalog_get
from .base import Protocol, add_unknown_route


def router(protocol: Protocol) -> Router:
    router = Router(auth=protocol.key)

    @router.post("/models/{target}")
    async def call(request, target: str):
        model, _, method = target.rpartition(":")
        if method == "generateContent":
            return await serve(request, codec=gemini, endpoint="gemini.generateContent", model=model)
        if method == "streamGenerateContent":
            return await serve(request, codec=gemini, endpoint="gemini.streamGenerateContent", model=model,
                               stream=True, sse=request.GET.get("alt") == "sse")
        if method == "countTokens":
            body = parse_json_body(request)
            # countTokens takes `contents` directly or a whole `generateContentRequest`.
            inner = body.get("generateContentRequest") if isinstance(body, dict) else None
            ireq = gemini.decode_request(inner if isinstance(inner, dict) else body, model=model)
            return json_response({"totalTokens": await count_tokens(request, ireq)})
        raise GatewayError(404, f"Unknown method '{method}': use generateContent, streamGenerateContent or "
                           "countTokens.", code="unknown_url")

    @router.get("/models")
    async def list_models(request):
        return json_response(protocol.model_list(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{target}")  # the same path as `call`: one URL pattern answering both methods
    async def retrieve_model(request, target: str):
        return json_response(protocol.model(await catalog_get(), target, request.auth.allowed_models))

    add_unknown_route(router)
    return router


def render(request, error: GatewayError, request_id: str) -> HttpResponse:
    return json_response(gemini.error_body(error), status=error.status, request_id=request_id)

