"""Fixtures of the end-to-end tests beyond tests/conftest.py's: committed providers, models and deployments."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone


@pytest.fixture
def setup(django_db_blocker):
    """Creates committed providers / models / deployments for one test; returns a builder."""
    from billing.services import model_price_add
    from gateway.models import CatalogModel, Credential, Deployment, Provider
    from gateway.services import credential_save

    suffix = uuid.uuid4().hex[:8]

    class Builder:
        def provider(self, kind: str, base_url: str = "", *, key: str | None = None, cooldown: int = 30):
            with django_db_blocker.unblock():
                provider = Provider.objects.create(name=f"{kind}-{suffix}-{uuid.uuid4().hex[:4]}", kind=kind,
                                                   base_url=base_url, cooldown_seconds=cooldown)
                if key:
                    credential_save(credential=Credential(provider=provider, name="main"), secret=key)
            return provider

        def model(self, *deployments, capability: str = "chat", **fields) -> str:
            """`deployments`: (provider, upstream model, priority, weight) tuples."""
            with django_db_blocker.unblock():
                model = CatalogModel.objects.create(name=f"m-{suffix}-{uuid.uuid4().hex[:4]}", capability=capability,
                                                    **fields)
                model_price_add(model=model, effective_from=timezone.now(), input_nano_per_mtok=10**9, output_nano_per_mtok=2 * 10**9,
                                cache_write_nano_per_mtok=0, cache_read_nano_per_mtok=0)
                for provider, upstream_model, priority, weight in deployments:
                    Deployment.objects.create(model=model, provider=provider, upstream_model=upstream_model,
                                              priority=priority, weight=weight)
            return model.name

    return Builder()
