"""Spend per end user and per tag: the attribution rollups the rollup task writes, and the reads behind
`/v1/usage?group_by=end_user|tag` and the dashboard (rollups plus the rows not rolled up yet)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing.models import AttributionRollup
from billing.selectors import usage_by_attribution
from billing.services import usage_reconcile, usage_rollup
from tests.unit.billing.test_billing import HAIKU, SONNET, customer, event

pytestmark = pytest.mark.django_db


def attributed(api_key, *, end_user: str = "", tags: str = "", **kwargs):
    row = event(api_key, **kwargs)
    row.end_user, row.tags = end_user, tags
    row.save(update_fields=["end_user", "tags"])
    return row


def by_value(tenant, dimension: str, **kwargs) -> dict[str, tuple[int, int]]:
    today = timezone.now().date()
    return {row["value"]: (row["requests"], row["cost_nano"])
            for row in usage_by_attribution(tenant_id=tenant.pk, start=today, end=today, dimension=dimension, **kwargs)}


def test_spend_per_end_user_and_per_tag_is_the_same_before_and_after_the_rollup_and_never_double_counted():
    tenant, key = customer("attr")
    attributed(key, end_user="alice", tags="team:search,env:prod", cost=100)
    attributed(key, end_user="alice", tags="team:search", cost=30)
    attributed(key, end_user="bob", cost=7)
    attributed(key, cost=1)
    expected_users = {"alice": (2, 130), "bob": (1, 7), "": (1, 1)}
    expected_tags = {"team:search": (2, 130), "env:prod": (1, 100), "": (2, 8)}

    assert by_value(tenant, "end_user") == expected_users  # all from the rows not rolled up yet
    assert by_value(tenant, "tag") == expected_tags
    usage_rollup()
    usage_rollup()  # nothing left: nothing counted twice
    assert by_value(tenant, "end_user") == expected_users  # all from the rollups
    assert by_value(tenant, "tag") == expected_tags
    assert AttributionRollup.objects.filter(tenant=tenant, dimension="tag").count() == 3
    attributed(key, end_user="bob", tags="env:prod", cost=5)  # the tail adds to the rolled-up figures
    assert by_value(tenant, "end_user")["bob"] == (2, 12)
    assert by_value(tenant, "tag")["env:prod"] == (2, 105)
    usage_rollup()
    assert usage_reconcile() == []


def test_attribution_groups_by_model_and_key_and_filters_like_the_usage_page():
    tenant, key = customer("attr")
    other = type(key).objects.get(pk=customer_key(tenant))
    attributed(key, end_user="alice", model=SONNET, cost=10)
    attributed(key, end_user="alice", model=HAIKU, cost=3)
    attributed(other, end_user="alice", model=HAIKU, cost=2)
    usage_rollup()
    today = timezone.now().date()
    rows = usage_by_attribution(tenant_id=tenant.pk, start=today, end=today, dimension="end_user", by=("model",))
    assert {(row["model"], row["value"]): row["cost_nano"] for row in rows} == {(SONNET, "alice"): 10,
                                                                                 (HAIKU, "alice"): 5}
    assert by_value(tenant, "end_user", key_ids=[other.pk]) == {"alice": (1, 2)}
    assert by_value(tenant, "end_user", model=SONNET) == {"alice": (1, 10)}


def test_reconcile_finds_an_attribution_rollup_that_drifted():
    tenant, key = customer("attr")
    attributed(key, end_user="carol", tags="a", cost=10)
    usage_rollup()
    AttributionRollup.objects.filter(tenant=tenant, dimension="tag", value="a").update(cost_nano=11)
    assert any("attribution rollup" in line for line in usage_reconcile())


def customer_key(tenant) -> int:
    from accounts.services import api_key_issue

    return api_key_issue(tenant=tenant, name="second").api_key.pk
