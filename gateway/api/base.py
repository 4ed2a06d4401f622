"""What every public API shares (django-ninja, async): a protocol's entry (`Protocol`, listed in
registry.py), one error path in the protocol's shape, ninja's own failures and 405s rendered the same
way, the unknown-route catch-all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpResponse, HttpResponseNotAllowed
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError

from common.db import UNREACHABLE
from common.errors import AppError
from common.outage import db_unavailable

from ..auth import ApiKey
from ..core import GatewayError, database_unavailable, internal_error, invalid, protocol_error
from ..pipeline import echo_headers, new_request_id, serve_oneshot
from ..protocols import embeddings
from ..selectors import Catalog

logger = logging.getLogger(__name__)

Renderer = Callable[[object, GatewayError, str], HttpResponse]
ModelList = Callable[[Catalog, frozenset[str]], dict]  # (catalog, the key's allowed models) -> the list
ModelGet = Callable[[Catalog, str, frozenset[str]], dict]  # (catalog, name, allowed) -> one model, or a 404


@dataclass(frozen=True)
class Mount:
    """One ninja API of a protocol, at `prefix` under the site's root."""

    prefix: str  # "v1/", "gemini/v1beta/"
    namespace: str  # the API's URL namespace, unique across the registry
    router: Callable[[Protocol], Router]  # its operations, built from the protocol's entry
    # The router ends in a catch-all (add_unknown_route): it answers every path under `prefix`, so
    # every mount whose prefix starts with this one is mounted before it.
    catch_all: bool = True


@dataclass(frozen=True)
class Protocol:
    """An ingress protocol: how its SDKs present the key, the shape of its errors and model lists, where
    its APIs are mounted. Its routers read `key`, `model_list` and `model` from here."""

    name: str
    key: ApiKey
    render: Renderer
    mounts: tuple[Mount, ...]
    model_list: ModelList | None = None  # None: no /models route
    model: ModelGet | None = None


def add_unknown_route(router: Router) -> None:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @router.api_operation(methods, "/{path:rest}", auth=None)
    async def unknown_route(request, rest: str):
        raise GatewayError(404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")

    @router.api_operation(methods, "/", auth=None)  # the API's root, which `rest` (one character or more) misses
    async def unknown_root(request):
        return await unknown_route(request, "")


def add_embedding_operations(router: Router) -> None:
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
    # an unreachable database is common.outage's one line per interval, other 5xx get one line here.
    if error.status >= 500 and error.code != "database_unavailable":
        logger.warning("%s %s: %s %s (%s)", request.method, request.path, error.status, error.code or error.type,
                       request_id)
    response._has_been_logged = True
    return response


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


def build(namespace: str, router: Router, render: Renderer) -> NinjaAPI:
    """An API whose every failure, ours or the framework's, is rendered by `render` in its protocol's shape."""
    api = _Api(render=render, title=f"Gatehouse {namespace}", urls_namespace=namespace, docs_url=None,
               openapi_url=None)
    api.add_router("/", router)

    def handle(request, error: GatewayError):
        return error_response(request, error, render)

    api.exception_handler(GatewayError)(handle)
    api.exception_handler(AppError)(lambda request, exc: handle(request, protocol_error(exc)))
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
