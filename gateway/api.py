"""The public APIs (django-ninja, async): thin operations over gateway.pipeline, one API per protocol.

Each protocol has its own mount points, key header and error shape; they share one request path.

- OpenAI: `/v1/...` and `/openai/v1/...`.
- Anthropic: `/anthropic/v1/...`, and `/v1/messages` (+ `/count_tokens`) for an Anthropic SDK whose
  `base_url` is our root; its `/v1/models` is the OpenAI route, which answers in Anthropic's shape
  when the request carries `anthropic-version`.
- Gemini: `/gemini/v1beta/models/{model}:{method}` (and `/gemini/v1/...`).
- Jina: `/jina/v1/embeddings` and `/jina/v1/rerank`, the OpenAI API's operations with OpenAI's errors.
- Admin usage and cost APIs (tenant admin keys): OpenAI's `/v1/organization/...` (and under `/openai`),
  Anthropic's `/v1/organizations/...` (and under `/anthropic`), mounted before the APIs whose catch-alls
  would otherwise answer them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotAllowed
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError

from config.db import UNREACHABLE
from config.outage import db_unavailable

from . import admin_usage_api, conversations_api, models_api
from .auth import ADMIN_KEY, ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY
from .core import GatewayError, database_unavailable, internal_error, invalid
from .pipeline import count_tokens, echo_headers, json_response, new_request_id, parse_json_body, serve, serve_oneshot
from .protocols import anthropic_messages, embeddings, gemini, openai_chat, openai_responses
from .responses_api import response_input_items, response_remove, response_retrieve
from .selectors import catalog_get
from .usage_api import trace_report, usage_report

logger = logging.getLogger(__name__)

Renderer = Callable[[object, GatewayError, str], HttpResponse]


def _unknown_route(router: Router) -> None:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @router.api_operation(methods, "/{path:rest}", auth=None)
    async def unknown_route(request, rest: str):
        raise GatewayError(404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")

    @router.api_operation(methods, "/", auth=None)  # the API's root, which `rest` (one character or more) misses
    async def unknown_root(request):
        return await unknown_route(request, "")


def _embedding_operations(router: Router) -> None:
    @router.post("/embeddings")
    async def create_embeddings(request):
        return await serve_oneshot(request, endpoint="embeddings", capability="embeddings",
                                   decode=embeddings.decode_embeddings, method="embeddings")

    @router.post("/rerank")
    async def create_rerank(request):
        return await serve_oneshot(request, endpoint="rerank", capability="rerank", decode=embeddings.decode_rerank,
                                   method="rerank")


def error_response(request, error: GatewayError, render: Renderer) -> HttpResponse:
    """`error` in a protocol's shape (`render`), with its headers, `retry-after` and the client's ids."""
    request_id = getattr(request, "gateway_request_id", None) or new_request_id()
    response = render(request, error, request_id)
    for name, value in {**error.headers, **echo_headers(getattr(request, "gateway_trace", {}))}.items():
        response[name] = value
    if error.retry_after is not None:
        response["retry-after"] = str(error.retry_after)
    # An expected failure logs once, with its request id, instead of Django's line per response (which has
    # no id, and costs a thread hop): a client's mistake (4xx) is the access log's alone (LOG_FORMAT=json),
    # an unreachable database is config.outage's one line per interval, other 5xx get one line here.
    if error.status >= 500 and error.code != "database_unavailable":
        logger.warning("%s %s: %s %s (%s)", request.method, request.path, error.status, error.code or error.type,
                       request_id)
    response._has_been_logged = True
    return response


def openai_error_response(request, error: GatewayError) -> HttpResponse:
    return error_response(request, error, _render_openai)


class _Api(NinjaAPI):
    """A NinjaAPI whose 405s (a known path, another method), which ninja answers in plain text without
    raising, are rendered in the protocol's shape too, with their `allow` header."""

    def __init__(self, *, render: Renderer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.render = render

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        # Without ninja's own root page (an HTML 404 with docs off), an API's root is its unknown route.
        patterns = [pattern for pattern in patterns if pattern.name != "api-root"]
        for pattern in patterns:
            pattern.callback = self._shaped_405(pattern.callback)
        return patterns, app_name, namespace

    def _shaped_405(self, view):
        async def shaped(request, *args, **kwargs):
            response = await view(request, *args, **kwargs)
            if isinstance(response, HttpResponseNotAllowed):
                allowed = ", ".join(sorted(response["allow"].split(", ")))
                response = error_response(request, GatewayError(
                    405, f"{request.method} is not allowed on {request.path}; use {allowed}.",
                    code="method_not_allowed", type="invalid_request_error"), self.render)
                response["allow"] = allowed
            return response
        return shaped


def _build(namespace: str, router: Router, render: Renderer) -> NinjaAPI:
    """An API whose every failure, ours or the framework's, is rendered by `render` in its protocol's shape."""
    api = _Api(render=render, title=f"Gatehouse {namespace}", urls_namespace=namespace, docs_url=None,
               openapi_url=None)
    api.add_router("/", router)

    def handle(request, error: GatewayError):
        return error_response(request, error, render)

    api.exception_handler(GatewayError)(handle)
    api.exception_handler(AuthenticationError)(lambda request, exc: handle(request, GatewayError(
        401, "Invalid authentication.", code="invalid_api_key", type="authentication_error")))
    api.exception_handler(ValidationError)(lambda request, exc: handle(request, invalid(f"Invalid request: {exc.errors}")))
    api.exception_handler(HttpError)(lambda request, exc: handle(request, GatewayError(exc.status_code, str(exc))))

    def database_down(request, exc: Exception):
        db_unavailable.failed(exc)  # one line per interval, not a traceback per request
        return handle(request, database_unavailable())

    for unreachable in UNREACHABLE:
        api.exception_handler(unreachable)(database_down)

    @api.exception_handler(Exception)
    def unexpected(request, exc: Exception):
        logger.exception("unhandled error on %s", request.path)
        return handle(request, internal_error())

    return api


# --- OpenAI ----------------------------------------------------------------------------------------


def _openai_router() -> Router:
    router = Router(auth=OPENAI_KEY)

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

    _embedding_operations(router)

    @router.get("/traces/{trace_id}")
    async def trace(request, trace_id: str):
        return json_response(await trace_report(request.auth, trace_id=trace_id))

    @router.get("/threads/{thread_id}")
    async def thread(request, thread_id: str):
        return json_response(await trace_report(request.auth, thread_id=thread_id))

    @router.get("/models")
    async def list_models(request):
        shape = models_api.anthropic_model_list if _is_anthropic(request) else models_api.model_list_payload
        return json_response(shape(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{path:model_id}")
    async def retrieve_model(request, model_id: str):
        shape = models_api.anthropic_model if _is_anthropic(request) else models_api.model_payload
        return json_response(shape(await catalog_get(), model_id, request.auth.allowed_models))

    _unknown_route(router)
    return router


def _is_anthropic(request) -> bool:
    return "anthropic-version" in request.headers


def _render_openai(request, error: GatewayError, request_id: str) -> HttpResponse:
    if _is_anthropic(request):  # the Anthropic SDK listing models at our root
        return _render_anthropic(request, error, request_id)
    return json_response(openai_chat.error_body(error), status=error.status, request_id=request_id)


def _admin_router(operations: tuple[tuple[str, Callable], ...]) -> Router:
    """A read-only admin usage API (tenant admin keys): GET operations, then the catch-all."""
    router = Router(auth=ADMIN_KEY)
    for path, view in operations:
        router.add_api_operation(path, ["GET"], view)
    _unknown_route(router)
    return router


# OpenAI's Administration API under /v1/organization: usage, costs, admin keys, the project.
_OPENAI_ADMIN = (
    ("/usage/completions", admin_usage_api.openai_completions),
    ("/usage/embeddings", admin_usage_api.openai_embeddings),
    ("/costs", admin_usage_api.openai_costs),
    ("/admin_api_keys", admin_usage_api.openai_admin_keys),
    ("/projects", admin_usage_api.openai_projects),
    ("/projects/{project_id}", admin_usage_api.openai_project),
    ("/projects/{project_id}/api_keys", admin_usage_api.openai_project_keys),
)


# --- Anthropic -------------------------------------------------------------------------------------


def _betas(request) -> tuple[str, ...]:
    """The request's `anthropic-beta` flags, forwarded unless the operator blocks one (the upstream
    judges the rest: a client's newer betas work without a gateway release)."""
    flags = tuple(flag.strip() for flag in request.headers.get("anthropic-beta", "").split(",") if flag.strip())
    for flag in flags:
        if flag in settings.ANTHROPIC_BLOCKED_BETAS:
            raise invalid(f"anthropic-beta: '{flag}' is not enabled on this gateway.", "anthropic-beta")
    return flags


def _anthropic_router(*, full: bool) -> Router:
    """`full`: the whole API under /anthropic/v1; otherwise only the message routes, for the /v1 root."""
    router = Router(auth=ANTHROPIC_KEY)

    @router.post("/messages")
    async def messages(request):
        return await serve(request, codec=anthropic_messages, endpoint="messages", betas=_betas(request))

    @router.post("/messages/count_tokens")
    async def messages_count_tokens(request):
        betas = _betas(request)
        ireq = anthropic_messages.decode_count_request(parse_json_body(request), betas=betas)
        return json_response({"input_tokens": await count_tokens(request, ireq)})

    if full:
        @router.get("/models")
        async def list_models(request):
            return json_response(models_api.anthropic_model_list(await catalog_get(), request.auth.allowed_models))

        @router.get("/models/{path:model_id}")
        async def retrieve_model(request, model_id: str):
            return json_response(models_api.anthropic_model(await catalog_get(), model_id,
                                                            request.auth.allowed_models))

        _unknown_route(router)
    return router


# Anthropic's Admin API under /v1/organizations: the usage and cost reports, the API keys.
_ANTHROPIC_ADMIN = (
    ("/usage_report/messages", admin_usage_api.anthropic_usage),
    ("/cost_report", admin_usage_api.anthropic_costs),
    ("/api_keys", admin_usage_api.anthropic_api_keys),
)


def _render_anthropic(request, error: GatewayError, request_id: str) -> HttpResponse:
    return json_response(anthropic_messages.error_body(error, request_id), request_id=request_id,
                         status=anthropic_messages.error_status(error))


# --- Gemini ----------------------------------------------------------------------------------------


def _gemini_router() -> Router:
    router = Router(auth=GOOGLE_KEY)

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
        return json_response(models_api.gemini_model_list(await catalog_get(), request.auth.allowed_models))

    @router.get("/models/{target}")  # the same path as `call`: one URL pattern answering both methods
    async def retrieve_model(request, target: str):
        return json_response(models_api.gemini_model(await catalog_get(), target, request.auth.allowed_models))

    _unknown_route(router)
    return router


def _render_gemini(request, error: GatewayError, request_id: str) -> HttpResponse:
    return json_response(gemini.error_body(error), status=error.status, request_id=request_id)


def _jina_router() -> Router:
    """Jina's paths for its SDKs and clients: the same operations as /v1/embeddings and /v1/rerank."""
    router = Router(auth=OPENAI_KEY)
    _embedding_operations(router)
    _unknown_route(router)
    return router


api = _build("openai", _openai_router(), _render_openai)
jina_api = _build("jina", _jina_router(), _render_openai)
openai_alias_api = _build("openai-alias", _openai_router(), _render_openai)
anthropic_api = _build("anthropic", _anthropic_router(full=True), _render_anthropic)
anthropic_root_api = _build("anthropic-root", _anthropic_router(full=False), _render_anthropic)
gemini_api = _build("gemini", _gemini_router(), _render_gemini)
gemini_v1_api = _build("gemini-v1", _gemini_router(), _render_gemini)  # google-genai's default with a base_url
openai_admin_api = _build("openai-admin", _admin_router(_OPENAI_ADMIN), _render_openai)
openai_admin_alias_api = _build("openai-admin-alias", _admin_router(_OPENAI_ADMIN), _render_openai)
anthropic_admin_api = _build("anthropic-admin", _admin_router(_ANTHROPIC_ADMIN), _render_anthropic)
anthropic_admin_alias_api = _build("anthropic-admin-alias", _admin_router(_ANTHROPIC_ADMIN), _render_anthropic)
