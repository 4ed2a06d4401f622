"""The OpenAI-compatible API (django-ninja, async): thin operations over gateway.pipeline."""

from __future__ import annotations

import logging

from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError

from . import conversations_api
from .auth import BearerKey
from .core import GatewayError, internal_error
from .models_api import model_list_payload, model_payload
from .pipeline import json_response, new_request_id, serve
from .protocols import openai_chat, openai_responses
from .responses_api import response_input_items, response_remove, response_retrieve
from .selectors import catalog_get
from .usage_api import usage_report

logger = logging.getLogger(__name__)


def _openai_router() -> Router:
    router = Router(auth=BearerKey())

    @router.post("/chat/completions")
    async def chat_completions(request):
        return await serve(request, codec=openai_chat, endpoint="chat.completions")

    @router.post("/responses")
    async def create_response(request):
        return await serve(request, codec=openai_responses, endpoint="responses")

    # Operations that take (request, ids...) and answer, registered as they are.
    for path, method, view in (
        ("/responses/{response_id}", "GET", response_retrieve),
        ("/responses/{response_id}", "DELETE", response_remove),
        ("/responses/{response_id}/input_items", "GET", response_input_items),
        ("/conversations", "POST", conversations_api.create),
        ("/conversations/{conversation_id}", "GET", conversations_api.retrieve),
        ("/conversations/{conversation_id}", "POST", conversations_api.update),
        ("/conversations/{conversation_id}", "DELETE", conversations_api.delete),
        ("/conversations/{conversation_id}/items", "GET", conversations_api.list_items),
        ("/conversations/{conversation_id}/items", "POST", conversations_api.add_items),
        ("/conversations/{conversation_id}/items/{item_id}", "GET", conversations_api.retrieve_item),
        ("/conversations/{conversation_id}/items/{item_id}", "DELETE", conversations_api.delete_item),
        ("/usage", "GET", usage_report),
    ):
        router.add_api_operation(path, [method], view)

    @router.get("/models")
    async def list_models(request):
        return json_response(model_list_payload(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{path:model_id}")
    async def retrieve_model(request, model_id: str):
        return json_response(model_payload(await catalog_get(), model_id, request.auth.allowed_models))

    @router.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", auth=None)
    async def unknown_route(request, rest: str):
        raise GatewayError(404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")

    return router


def _render(request, error: GatewayError):
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["retry-after"] = str(error.retry_after)
    return json_response(openai_chat.error_body(error), status=error.status, headers=headers,
                         request_id=getattr(request, "gateway_request_id", None) or new_request_id())


def build_openai_api(namespace: str) -> NinjaAPI:
    """The OpenAI API, mountable under several prefixes (/v1/ and /openai/v1/)."""
    api = NinjaAPI(title="Gatehouse OpenAI-compatible API", urls_namespace=namespace, docs_url=None,
                   openapi_url=None)
    api.add_router("/", _openai_router())

    @api.exception_handler(GatewayError)
    def gateway_error(request, exc: GatewayError):
        return _render(request, exc)

    @api.exception_handler(AuthenticationError)
    def auth_error(request, exc):
        return _render(request, GatewayError(401, "Invalid authentication.", code="invalid_api_key",
                                             type="authentication_error"))

    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        return _render(request, GatewayError(400, f"Invalid request: {exc.errors}"))

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return _render(request, GatewayError(exc.status_code, str(exc)))

    @api.exception_handler(Exception)
    def unexpected(request, exc: Exception):
        logger.exception("unhandled error on %s", request.path)
        return _render(request, internal_error())

    return api


api = build_openai_api("openai")
openai_alias_api = build_openai_api("openai-alias")
