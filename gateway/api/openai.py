"""The OpenAI API: `/v1/...` and `/openai/v1/...`; its Administration API's usage and cost reports under
`/v1/organization/...` (and `/openai/v1/organization/...`), for tenant admin keys.

The Anthropic SDK with our root as its `base_url` lists models at `/v1/models`: that route answers (and
fails) in Anthropic's shape when the request carries `anthropic-version`.
"""

from __future__ import annotations

from django.http import HttpResponse
from ninja import Router

from ..core import GatewayError
from ..pipeline import json_response, serve
from ..protocols import openai_chat, openai_responses
from ..selectors import catalog_get
from . import admin_usage, anthropic, batches, conversations, model_lists
from .base import Protocol, add_embedding_operations, add_unknown_route, error_response
from .responses import response_input_items, response_remove, response_retrieve
from .usage import trace_report, usage_report


def router(protocol: Protocol) -> Router:
    router = Router(auth=protocol.key)

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
        ("/conversations", "POST", conversations.create),
        ("/conversations/{conversation_id}", "GET", conversations.retrieve),
        ("/conversations/{conversation_id}", "POST", conversations.update),
        ("/conversations/{conversation_id}", "DELETE", conversations.delete),
        ("/conversations/{conversation_id}/items", "GET", conversations.list_items),
        ("/conversations/{conversation_id}/items", "POST", conversations.add_items),
        ("/conversations/{conversation_id}/items/{item_id}", "GET", conversations.retrieve_item),
        ("/conversations/{conversation_id}/items/{item_id}", "DELETE", conversations.delete_item),
        ("/usage", "GET", usage_report),
    ):
        router.add_api_operation(path, [method], view)

    add_embedding_operations(router)

    @router.get("/traces/{trace_id}")
    async def trace(request, trace_id: str):
        return json_response(await trace_report(request.auth, trace_id=trace_id))

    @router.get("/threads/{thread_id}")
    async def thread(request, thread_id: str):
        return json_response(await trace_report(request.auth, thread_id=thread_id))

    @router.get("/models")
    async def list_models(request):
        shape = model_lists.anthropic_model_list if _is_anthropic(request) else protocol.model_list
        return json_response(shape(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{path:model_id}")
    async def retrieve_model(request, model_id: str):
        shape = model_lists.anthropic_model if _is_anthropic(request) else protocol.model
        return json_response(shape(await catalog_get(), model_id, request.auth.allowed_models))

    batches.add_openai_operations(router)
    add_unknown_route(router)
    return router


def _is_anthropic(request) -> bool:
    return "anthropic-version" in request.headers


def render(request, error: GatewayError, request_id: str) -> HttpResponse:
    if _is_anthropic(request):  # the Anthropic SDK listing models at our root
        return anthropic.render(request, error, request_id)
    return json_response(openai_chat.error_body(error), status=error.status, request_id=request_id)


def openai_error_response(request, error: GatewayError) -> HttpResponse:
    return error_response(request, error, render)


# OpenAI's Administration API under /v1/organization: usage, costs, admin keys, the project.
def admin_router(protocol: Protocol) -> Router:
    return admin_usage.admin_router((
        ("/usage/completions", admin_usage.openai_completions),
        ("/usage/embeddings", admin_usage.openai_embeddings),
        ("/costs", admin_usage.openai_costs),
        ("/admin_api_keys", admin_usage.openai_admin_keys),
        ("/projects", admin_usage.openai_projects),
        ("/projects/{project_id}", admin_usage.openai_project),
        ("/projects/{project_id}/api_keys", admin_usage.openai_project_keys),
    ))
