"""The OpenAI- and Anthropic-compatible usage and cost APIs, for tenant admin keys (`sk_cdx_admin_...`).

Thin operations: parse the query (gateway/protocols/openai_admin.py, anthropic_admin.py), read the
usage buckets (billing.selectors.usage_buckets: the minute, hour and day rollups plus the rows not yet
rolled up), shape. Every figure is the tenant's own: the admin key's tenant is the only one read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ninja import Router

from accounts.selectors import admin_keys_listed, api_keys_listed
from billing.selectors import usage_buckets
from common.db import db_unit

from ..auth import ADMIN_KEY
from ..pipeline import json_response
from ..protocols import anthropic_admin, openai_admin
from ..protocols.usage_query import UsageQuery
from .base import add_unknown_route

_buckets_async = db_unit(usage_buckets)
_api_keys_async = db_unit(api_keys_listed)
_admin_keys_async = db_unit(admin_keys_listed)


def _params(request) -> dict[str, list[str]]:
    return dict(request.GET.lists())


async def _rows(tenant, query: UsageQuery, *, embeddings: bool | None, workspace: str | None) -> list[dict]:
    if query.workspace_ids is not None and workspace not in query.workspace_ids:
        return []  # a project or workspace this organization does not have
    return await _buckets_async(tenant_id=tenant.pk, width=query.page.width, start=query.page.start,
                                end=query.page.end, embeddings=embeddings, key_public_ids=query.key_public_ids,
                                models=query.models)


# --- OpenAI ----------------------------------------------------------------------------------------------


async def openai_completions(request):
    return await _openai_usage(request, embeddings=False)


async def openai_embeddings(request):
    return await _openai_usage(request, embeddings=True)


async def _openai_usage(request, *, embeddings: bool):
    tenant = request.auth.tenant
    query = openai_admin.parse_query(_params(request), now=datetime.now(UTC))
    project = openai_admin.project_id(tenant.slug)
    rows = await _rows(tenant, query, embeddings=embeddings, workspace=project)
    shape = openai_admin.embeddings_page if embeddings else openai_admin.completions_page
    return json_response(shape(query, rows, project=project))


async def openai_costs(request):
    tenant = request.auth.tenant
    query = openai_admin.parse_query(_params(request), now=datetime.now(UTC), costs=True)
    project = openai_admin.project_id(tenant.slug)
    rows = await _rows(tenant, query, embeddings=None, workspace=project)
    return json_response(openai_admin.costs_page(query, rows, project=project))


async def openai_admin_keys(request):
    params = _params(request)
    limit, after = openai_admin.list_params(params)
    keys, has_more = await _admin_keys_async(tenant_id=request.auth.tenant.pk, limit=limit,
                                             after=after and after.removeprefix(openai_admin.KEY_PREFIX),
                                             descending=openai_admin.descending(params))
    return json_response(openai_admin.admin_key_list(keys, has_more=has_more))


def _project(tenant) -> dict:
    return openai_admin.project(tenant_slug=tenant.slug, tenant_name=tenant.name, created_at=tenant.created_at,
                                active=tenant.status == "active")


def _tenant_project(request, project_id: str):
    tenant = request.auth.tenant
    if project_id != openai_admin.project_id(tenant.slug):
        raise openai_admin.unknown_project(project_id)
    return tenant


async def openai_projects(request):
    openai_admin.list_params(_params(request))
    return json_response(openai_admin.project_list(_project(request.auth.tenant)))


async def openai_project(request, project_id: str):
    return json_response(_project(_tenant_project(request, project_id)))


async def openai_project_keys(request, project_id: str):
    tenant = _tenant_project(request, project_id)
    limit, after = openai_admin.list_params(_params(request))
    keys, has_more = await _api_keys_async(tenant_id=tenant.pk, limit=limit, status="active",
                                           after=after and after.removeprefix(openai_admin.KEY_PREFIX))
    return json_response(openai_admin.project_key_list(keys, has_more=has_more))


# --- Anthropic -------------------------------------------------------------------------------------------


async def anthropic_usage(request):
    query = anthropic_admin.parse_query(_params(request), now=datetime.now(UTC))
    rows = await _rows(request.auth.tenant, query, embeddings=False, workspace=None)
    return json_response(anthropic_admin.usage_report(query, rows))


async def anthropic_costs(request):
    query = anthropic_admin.parse_query(_params(request), now=datetime.now(UTC), costs=True)
    rows = await _rows(request.auth.tenant, query, embeddings=None, workspace=None)
    return json_response(anthropic_admin.cost_report(query, rows))


async def anthropic_api_keys(request):
    limit, after, before, status = anthropic_admin.key_list_params(_params(request))
    keys, has_more = await _api_keys_async(tenant_id=request.auth.tenant.pk, limit=limit, after=after, before=before,
                                           status=status)
    return json_response(anthropic_admin.key_list(keys, has_more=has_more))


def admin_router(operations: tuple[tuple[str, Callable], ...]) -> Router:
    """A read-only admin usage API (tenant admin keys): GET operations, then the catch-all."""
    router = Router(auth=ADMIN_KEY)
    for path, view in operations:
        router.add_api_operation(path, ["GET"], view)
    add_unknown_route(router)
    return router
