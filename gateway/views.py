"""The gateway's pages: the landing page, the models and prices list (in the dashboard, and public
when PUBLIC_PRICES is set), the playground."""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_POST

from accounts.dashboard import dashboard_view, membership_for, visible_keys
from accounts.selectors import key_principal, principal_check
from billing.models import UsageEvent
from common.db import UNREACHABLE
from common.errors import AppError
from common.money import format_usd
from common.outage import db_unavailable

from .api.openai import openai_error_response
from .core import GatewayError, database_unavailable, protocol_error
from .models import CatalogModel
from .pipeline import json_response, serve
from .protocols import openai_chat
from .selectors import catalog_load
from .services import playground_key


def index(request):
    return render(request, "index.html", {"base_url": request.build_absolute_uri("/v1")})


def _prices_context() -> dict:
    now = time.time()
    return {"models": [{"entry": entry, "price": entry.price_at(now)} for entry in catalog_load().models]}


@dashboard_view()
def models_prices(request):
    """Every enabled model with its aliases, limits and the price in force (what `/v1/models` carries)."""
    return render(request, "dashboard/models.html", {"section": "models", **_prices_context()})


def public_prices(request):
    """The same list without signing in, when the operator publishes it (PUBLIC_PRICES)."""
    if not settings.PUBLIC_PRICES:
        raise Http404("Prices are not published.")
    return render(request, "dashboard/models.html", _prices_context())


@dashboard_view()
def playground(request):
    models = CatalogModel.objects.filter(enabled=True, capability=CatalogModel.Capability.CHAT).order_by("name")
    return render(request, "dashboard/playground.html", {"section": "playground", "models": models})


def _playground_principal(request):
    """The signed-in user's playground key in their current tenant, as the request path sees a key, with
    the same refusals as a presented key (a suspended tenant is refused here as on the API)."""
    membership = membership_for(request) if request.user.is_authenticated else None
    if membership is None:
        raise GatewayError(401, "Log in to use the playground.", code="login_required", type="authentication_error")
    principal = key_principal(playground_key(tenant=membership.tenant, user=request.user).public_id)
    return principal_check(principal, time.time())


@require_POST
async def playground_chat(request):
    """The playground's chat: a same-origin, session- and CSRF-checked door to the chat completions path,
    billed to the user's playground key, so no key ever reaches the browser. Admission (limits, budget,
    balance, allowed models) is the request path's own, as for any key."""
    try:
        request.auth = await sync_to_async(_playground_principal)(request)
        return await serve(request, codec=openai_chat, endpoint="chat.completions")
    except GatewayError as error:  # as the API renders it: OpenAI's shape, retry-after, rate-limit headers
        return openai_error_response(request, error)
    except AppError as error:  # a refused key, a busy conversation
        return openai_error_response(request, protocol_error(error))
    except UNREACHABLE as exc:
        db_unavailable.failed(exc)
        return openai_error_response(request, database_unavailable())


@dashboard_view()
def playground_usage(request, request_id: str):
    """What one playground turn cost, from its usage row (written before the answer's last bytes)."""
    row = UsageEvent.objects.filter(tenant=request.tenant, request_id=request_id,
                                    api_key__in=visible_keys(request)).first()
    if row is None:
        raise Http404("No such request.")
    return json_response({"input_tokens": row.input_tokens + row.cache_creation_input_tokens + row.cache_read_input_tokens,
                          "output_tokens": row.output_tokens, "cost": format_usd(row.cost_nano),
                          "status": row.status})
