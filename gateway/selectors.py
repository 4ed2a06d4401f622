"""Reads for the model catalog, cached per process so the request path does not query it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings

from billing.models import ModelPrice
from common.money import format_usd, usage_cost_nano
from common import crypto, metrics
from common.aio import SingleFlight
from common.db import UNREACHABLE, db_unit
from common.outage import db_unavailable

from .core import GatewayError
from .models import CatalogModel, Credential, Deployment, ModelAlias
from .providers import UpstreamConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """A ModelPrice row: nano-USD per million tokens (and per web search) from `effective_from` (unix seconds) on."""

    id: int
    effective_from: float
    input: int
    output: int
    cache_write: int
    cache_read: int
    web_search: int = 0  # nano-USD per web search
    batch_discount_bp: int = 5000  # off the token cost of a batch item, in basis points

    def cost_nano(self, *, input_tokens: int = 0, output_tokens: int = 0, cache_write_tokens: int = 0,
                  cache_read_tokens: int = 0, web_searches: int = 0, batch: bool = False) -> int:
        return usage_cost_nano(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_write_tokens=cache_write_tokens,
            cache_read_tokens=cache_read_tokens, input_price=self.input, output_price=self.output,
            cache_write_price=self.cache_write, cache_read_price=self.cache_read, web_searches=web_searches,
            web_search_price=self.web_search, discount_bp=self.batch_discount_bp if batch else 0)


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach a deployment: a provider instance's configuration (one credential) and its
    share of the deployment's traffic."""

    key: tuple[int, int]  # (deployment id, credential id; 0 = the provider's default credential)
    config: UpstreamConfig
    weight: float


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    id: int
    provider: str  # the Provider's name
    upstream_model: str
    priority: int
    weight: int
    cooldown_seconds: int
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    default_max_tokens: int
    max_output_tokens: int
    owned_by: str
    created: int  # unix seconds
    aliases: tuple[str, ...]
    prices: tuple[PriceEntry, ...] = ()  # newest first
    capability: str = "chat"
    deployments: tuple[DeploymentEntry, ...] = ()  # enabled ones with a usable credential, by priority
    first_token_timeout: float | None = None  # until a stream's first event (None: `timeout`)
    timeout: float = 600.0
    context_window: int = 200_000

    def price_at(self, when: float) -> PriceEntry | None:
        """The price in force at unix time `when` (None: the model has no price yet, usage costs 0)."""
        return next((price for price in self.prices if price.effective_from <= when), None)

    @property
    def names(self) -> frozenset[str]:
        return frozenset((self.name, *self.aliases))


@dataclass(frozen=True, slots=True)
class Catalog:
    models: tuple[ModelEntry, ...]  # enabled models, by name
    by_name: dict[str, ModelEntry]  # ids and aliases -> entry


def _load_deployments(models: dict[int, CatalogModel]) -> dict[int, list[DeploymentEntry]]:
    """Enabled deployments of `models` (enabled catalog rows by id), credentials decrypted (one that cannot
    be is skipped and logged, so a bad key costs that credential, not the catalog)."""
    credentials: dict[int, list[tuple[int, int, str]]] = {}
    for row in Credential.objects.filter(enabled=True):
        try:
            credentials.setdefault(row.provider_id, []).append((row.pk, row.weight, crypto.decrypt(row.secret_encrypted)))
        except ValueError:
            logger.error("credential %s of provider %s cannot be decrypted: skipped", row.name, row.provider_id)
    out: dict[int, list[DeploymentEntry]] = {}
    for row in Deployment.objects.filter(enabled=True, provider__enabled=True, model__in=models).select_related("provider"):
        model, provider = models[row.model_id], row.provider
        keys = credentials.get(provider.pk) or ([(0, 1, "")] if provider.kind == "anthropic" else [])
        total = sum(weight for _, weight, _ in keys)
        targets = tuple(
            Target(key=(row.pk, credential_id), weight=weight / total, config=UpstreamConfig(
                kind=provider.kind, base_url=provider.base_url, api_key=secret,
                connect_timeout=model.connect_timeout_seconds or settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
                first_token_timeout=model.first_token_timeout_seconds,
                timeout=model.timeout_seconds or settings.UPSTREAM_TIMEOUT_SECONDS))
            for credential_id, weight, secret in keys)
        if targets:
            out.setdefault(row.model_id, []).append(DeploymentEntry(
                id=row.pk, provider=provider.name, upstream_model=row.upstream_model, priority=row.priority,
                weight=row.weight, cooldown_seconds=provider.cooldown_seconds, targets=targets))
    return out


def catalog_load() -> Catalog:
    """The enabled catalog from the database (uncached: the request path uses `catalog_get`)."""
    aliases: dict[int, list[str]] = {}
    for model_id, alias in ModelAlias.objects.values_list("model_id", "name"):
        aliases.setdefault(model_id, []).append(alias)
    prices: dict[int, list[PriceEntry]] = {}
    for row in ModelPrice.objects.order_by("-effective_from"):
        prices.setdefault(row.model_id, []).append(PriceEntry(
            id=row.pk, effective_from=row.effective_from.timestamp(), input=row.input_nano_per_mtok,
            output=row.output_nano_per_mtok, cache_write=row.cache_write_nano_per_mtok,
            cache_read=row.cache_read_nano_per_mtok, web_search=row.web_search_nano,
            batch_discount_bp=row.batch_discount_bp))
    rows = list(CatalogModel.objects.filter(enabled=True).order_by("name"))
    deployments = _load_deployments({row.pk: row for row in rows})
    entries, by_name = [], {}
    for row in rows:
        entry = ModelEntry(
            name=row.name,
            capability=row.capability,
            deployments=tuple(sorted(deployments.get(row.pk, ()), key=lambda d: (d.priority, d.id))),
            first_token_timeout=row.first_token_timeout_seconds or settings.UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS,
            timeout=row.timeout_seconds or settings.UPSTREAM_TIMEOUT_SECONDS,
            default_max_tokens=row.default_max_tokens,
            max_output_tokens=row.max_output_tokens,
            context_window=row.context_window,
            owned_by=row.owned_by,
            created=int(row.created_at.timestamp()),
            aliases=tuple(sorted(aliases.get(row.pk, ()))),
            prices=tuple(prices.get(row.pk, ())),
        )
        entries.append(entry)
        by_name[row.name] = entry
        for alias in entry.aliases:
            by_name[alias] = entry
    return Catalog(models=tuple(entries), by_name=by_name)


def model_choices(now: float | None = None) -> list[tuple[str, str]]:
    """(name, label) of every enabled model and alias, with the price in force, for the dashboard's key form."""
    choices = []
    for entry in catalog_load().models:
        price = entry.price_at(time.time() if now is None else now)
        cost = (f"{format_usd(price.input)} in, {format_usd(price.output)} out per million tokens" if price
                else "no price set")
        choices.append((entry.name, f"{entry.name} · {entry.capability} · {cost}"))
        choices += [(alias, f"{alias} (alias of {entry.name}) · {cost}") for alias in entry.aliases]
    return choices


def known_models(names: list[str]) -> set[str]:
    """Which of `names` are catalog models or aliases, enabled or not (key settings may name only those)."""
    known = set(CatalogModel.objects.filter(name__in=names).values_list("name", flat=True))
    return known | set(ModelAlias.objects.filter(name__in=names).values_list("name", flat=True))


def first_chat_model() -> str | None:
    return (CatalogModel.objects.filter(enabled=True, capability=CatalogModel.Capability.CHAT)
            .values_list("name", flat=True).first())


def model_names() -> list[str]:
    return list(CatalogModel.objects.order_by("name").values_list("name", flat=True))


_load_catalog_async = db_unit(catalog_load)
_catalog_loads = SingleFlight()
_cached: tuple[float, Catalog] | None = None


async def catalog_get() -> Catalog:
    """The enabled catalog; reloaded at most every GATEWAY_CATALOG_CACHE_SECONDS (one query pair)."""
    global _cached
    now = time.monotonic()
    if _cached is None or now - _cached[0] >= settings.GATEWAY_CATALOG_CACHE_SECONDS:
        try:
            _cached = (now, await _catalog_loads.run("catalog", _load_catalog_async))
        except UNREACHABLE as exc:
            # The last catalog serves through a short outage (GATEWAY_STALE_GRACE_SECONDS).
            if _cached is None or now - _cached[0] >= (settings.GATEWAY_CATALOG_CACHE_SECONDS
                                                       + settings.GATEWAY_STALE_GRACE_SECONDS):
                raise
            db_unavailable.failed(exc)
    return _cached[1]


def catalog_forget() -> None:
    global _cached
    _cached = None


async def model_resolve(name: str, allowed: frozenset[str] = frozenset(), capability: str = "chat") -> ModelEntry:
    """The catalog entry for a model id or alias; 404 model_not_found for unknown or disabled ones.

    A key whose allow-list excludes the model gets 403, the same for an id and its aliases; a model
    that does not serve the endpoint's `capability` (chat, embeddings, rerank) is a 400.
    """
    entry = (await catalog_get()).by_name.get(name)
    if entry is None:
        raise GatewayError(
            404,
            f"The model '{name}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
            type="invalid_request_error",
        )
    if allowed and not allowed & entry.names:
        metrics.refused("model_not_allowed")
        raise GatewayError(
            403,
            f"This API key is not allowed to use the model '{name}'. Allowed: {', '.join(sorted(allowed))}.",
            code="model_not_allowed",
            param="model",
            type="permission_error",
        )
    if entry.capability != capability:
        raise GatewayError(
            400,
            f"The model '{name}' serves {entry.capability}, not {capability}: choose a {capability} model.",
            code="model_not_supported",
            param="model",
            type="invalid_request_error",
        )
    if not entry.deployments:
        raise GatewayError(503, f"The model '{name}' has no available deployment. Contact your operator.",
                           code="no_deployment", type="server_error")
    return entry
