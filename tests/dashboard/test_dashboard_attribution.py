"""The usage page's spend per end user and per tag, its cache columns, and the key form's per-end-user limits."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEntry
from billing.services import usage_rollup
from tests.dashboard.test_dashboard_keys import EDIT, key_of
from tests.dashboard.test_dashboard_usage import keys, page, usage  # noqa: F401 (a fixture)
from tests.support.dashboard import _own_cache_and_fast_hasher, text  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.django_db


def attributed(api_key, *, end_user="", tags="", cost=1_000_000, cache_read=0, cache_write=0):
    row = usage(api_key, cost=cost)
    row.end_user, row.tags = end_user, tags
    row.cache_read_input_tokens, row.cache_creation_input_tokens = cache_read, cache_write
    row.save(update_fields=["end_user", "tags", "cache_read_input_tokens", "cache_creation_input_tokens"])
    return row


def section(body: str, testid: str) -> str:
    start = body.index(f'data-testid="{testid}"')
    return body[start:body.index("</table>", start)]


def test_the_usage_page_shows_spend_per_end_user_and_tag_before_and_after_the_rollup(client_for, keys):
    alices, carols = keys
    attributed(alices, end_user="cust-1", tags="team:search,env:prod", cost=3_000_000)
    attributed(carols, end_user="cust-2", tags="team:search", cost=1_000_000)
    attributed(alices, cost=500_000)
    for _ in range(2):
        status, body = page(client_for("owner"))
        assert status == 200
        users, tags = section(body, "by-end-user"), section(body, "by-tag")
        assert "cust-1" in users and "$0.003" in users and "cust-2" in users and "no end user" in users
        assert users.index("cust-1") < users.index("cust-2")  # largest spend first
        assert "team:search" in tags and "$0.004" in tags and "env:prod" in tags and "untagged" in tags
        usage_rollup()


def test_a_member_sees_only_her_own_keys_end_users(client_for, keys):
    alices, carols = keys
    attributed(alices, end_user="alices-customer")
    attributed(carols, end_user="carols-customer")
    _, body = page(client_for("member"))
    assert "carols-customer" in section(body, "by-end-user") and "alices-customer" not in body


def test_cache_reads_writes_and_hit_ratio_per_model_and_key(client_for, keys):
    alices, _ = keys
    attributed(alices, cache_read=300, cache_write=100)  # input 100: 300 / 500 = 60 %
    _, body = page(client_for("owner"))
    for testid in ("by-model", "by-key"):
        table = section(body, testid)
        assert "Cache hit" in table and ">300<" in table and ">100<" in table and "60 %" in table


def test_the_key_form_edits_the_per_end_user_limits(client_for, team):
    api_key = key_of(team, team.carol)
    form = text(client_for("owner").get(reverse("key-edit", args=[api_key.pk])))
    assert "Requests per minute per end user" in form and "Budget per end user (USD)" in form
    response = client_for("owner").post(reverse("key-edit", args=[api_key.pk]),
                                        {**EDIT, "end_user_rpm_limit": "5", "end_user_budget_usd": "0.25"})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert (api_key.end_user_rpm_limit, api_key.end_user_budget_nano) == (5, 250_000_000)
    entry = AuditEntry.objects.filter(action="key.update", api_key=api_key).get()
    assert entry.details["end_user_rpm_limit"] == [None, 5]
    bad = client_for("owner").post(reverse("key-edit", args=[api_key.pk]), {**EDIT, "end_user_budget_usd": "0"})
    assert bad.status_code == 400 and "more than 0 USD" in text(bad)
