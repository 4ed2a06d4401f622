"""Tenants, key issuance and the gateway's cached key authentication."""

from __future__ import annotations

import math
import string

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts import keys
from accounts.models import ApiKey, Tenant
from accounts.selectors import api_key_authenticate, auth_failures, key_cache, legacy_ids
from accounts.services import api_key_issue, api_key_revoke, tenant_create, tenant_set_status
from common.errors import AppError

pytestmark = pytest.mark.django_db


# async_to_sync runs the lookup's sync_to_async unit back on this thread, inside the test transaction.
authenticate = async_to_sync(api_key_authenticate)


@pytest.fixture(autouse=True)
def fresh_key_cache():
    key_cache.clear()
    auth_failures.clear()
    legacy_ids.ids = None
    yield
    key_cache.clear()
    auth_failures.clear()
    legacy_ids.ids = None


@pytest.fixture
def acme():
    return tenant_create(slug="acme", name="Acme")


def test_key_format_has_public_id_and_at_least_160_bits_of_secret():
    plaintext, public_id, secret = keys.generate()
    assert plaintext == f"sk_cdx_{public_id}_{secret}"
    assert keys.parse(plaintext) == (public_id, secret)
    assert len(secret) * math.log2(len(string.ascii_letters + string.digits)) >= 160


def test_keys_are_unique():
    assert len({keys.generate()[0] for _ in range(200)}) == 200


@pytest.mark.parametrize("bad", ["", "sk_cdx_", "sk_cdx_abc_def", "sk-cdx_aaaaaaaaaaaa_" + "A" * 32,
                                 "sk_cdx_AAAAAAAAAAAA_" + "A" * 32, "sk_cdx_aaaaaaaaaaaa_" + "A" * 31 + "!"])
def test_malformed_keys_do_not_parse(bad):
    assert keys.parse(bad) is None


def test_only_a_digest_of_the_secret_is_stored(acme):
    issued = api_key_issue(tenant=acme, name="ci")
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    _, secret = keys.parse(issued.plaintext)
    stored = [str(value) for value in ApiKey.objects.filter(pk=row.pk).values().first().values()]
    assert not any(secret in value for value in stored)
    assert row.secret_digest == keys.digest(secret)
    assert row.display == f"sk_cdx_{row.public_id}_...{secret[-4:]}"


def test_tenant_slug_is_validated_and_unique(acme):
    with pytest.raises(ValidationError):
        tenant_create(slug="not a slug")
    with pytest.raises(ValidationError):
        tenant_create(slug="acme")


def test_suspended_tenant_gets_no_new_keys(acme):
    tenant_set_status(tenant=acme, status=Tenant.Status.SUSPENDED)
    with pytest.raises(ValidationError):
        api_key_issue(tenant=acme)


def test_authentication_accepts_a_good_key_and_refuses_a_wrong_secret(acme):
    issued = api_key_issue(tenant=acme)
    principal = authenticate(issued.plaintext)
    assert (principal.tenant_id, principal.key_id) == (acme.pk, issued.api_key.pk)

    public_id, secret = keys.parse(issued.plaintext)
    with pytest.raises(AppError) as caught:
        authenticate(f"sk_cdx_{public_id}_{'B' * len(secret)}")
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"


def test_a_cached_key_is_checked_without_a_query(acme, django_assert_num_queries):
    issued = api_key_issue(tenant=acme)
    authenticate(issued.plaintext)
    with django_assert_num_queries(0):
        authenticate(issued.plaintext)


def test_revocation_and_suspension_apply_once_the_cache_entry_expires(acme):
    issued, other = api_key_issue(tenant=acme), api_key_issue(tenant=acme)
    authenticate(issued.plaintext)
    api_key_revoke(api_key=issued.api_key)
    tenant_set_status(tenant=acme, status=Tenant.Status.SUSPENDED)

    with override_settings(GATEWAY_AUTH_CACHE_SECONDS=0):
        with pytest.raises(AppError) as revoked:
            authenticate(issued.plaintext)
        with pytest.raises(AppError) as suspended:
            authenticate(other.plaintext)
    assert revoked.value.status == 401
    assert suspended.value.status == 403 and suspended.value.code == "account_suspended"


def test_missing_and_malformed_keys_are_refused_without_a_query(django_assert_num_queries):
    for presented, code in ((None, "missing_api_key"), ("", "missing_api_key"), ("sk_live_x", "invalid_api_key")):
        with django_assert_num_queries(0), pytest.raises(AppError) as caught:
            authenticate(presented)
        assert (caught.value.status, caught.value.code) == (401, code)


def test_revoke_is_one_way(acme):
    issued = api_key_issue(tenant=acme)
    first = api_key_revoke(api_key=issued.api_key).revoked_at
    assert first is not None
    assert api_key_revoke(api_key=issued.api_key).revoked_at == first


def test_create_tenant_and_create_key_commands(capsys):
    call_command("create_tenant", "cmdco", "--name", "Command Co")
    assert Tenant.objects.get(slug="cmdco").name == "Command Co"
    call_command("create_key", "cmdco", "--name", "deploy")
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert keys.parse(last_line) is not None
    assert ApiKey.objects.get(tenant__slug="cmdco").name == "deploy"


def test_commands_reject_bad_input_with_a_message():
    with pytest.raises(CommandError, match="No tenant"):
        call_command("create_key", "ghost")
    with pytest.raises(CommandError, match="slug"):
        call_command("create_tenant", "bad slug!")


def test_demo_setup_prints_key_and_snippets(capsys):
    call_command("demo_setup", "--base-url", "http://127.0.0.1:8000")
    out = capsys.readouterr().out
    key = next(word for word in out.split() if word.startswith("sk_cdx_"))
    assert keys.parse(key) and "curl http://127.0.0.1:8000/v1/chat/completions" in out
    assert 'OpenAI(base_url="http://127.0.0.1:8000/v1"' in out
    from billing.selectors import tenant_balance_nano

    assert tenant_balance_nano(Tenant.objects.get(slug="demo").pk) > 0  # the demo key works out of the box
    call_command("demo_setup")
    assert tenant_balance_nano(Tenant.objects.get(slug="demo").pk) == 100 * 10**9  # topped up once, not twice


def test_every_change_to_a_key_writes_an_audit_row(acme, django_user_model):
    from datetime import timedelta

    from accounts.models import AuditEntry
    from accounts.services import api_key_rotate, api_key_update

    operator = django_user_model.objects.create_user("olivia")
    issued = api_key_issue(tenant=acme, name="ci", created_by=operator, via="admin", rpm_limit=60)
    api_key_update(api_key=issued.api_key, actor=operator, via="admin", rpm_limit=120, name="ci")
    api_key_update(api_key=issued.api_key, actor=operator, via="admin", rpm_limit=120)  # no change, no row
    api_key_rotate(api_key=issued.api_key, grace=timedelta(hours=1), actor=operator, via="admin")
    api_key_revoke(api_key=issued.api_key, actor=operator, via="admin")
    api_key_revoke(api_key=issued.api_key, actor=operator, via="admin")  # already revoked, no row
    rows = list(AuditEntry.objects.filter(api_key=issued.api_key).order_by("id"))
    assert [row.action for row in rows] == ["key.issue", "key.update", "key.rotate", "key.revoke"]
    assert {row.actor for row in rows} == {operator} and {row.tenant for row in rows} == {acme}
    assert rows[0].details == {"name": "ci", "rpm_limit": 60}
    assert rows[1].details == {"rpm_limit": [60, 120]}
    assert rows[2].details == {"grace_seconds": 3600}


def test_key_settings_are_validated_like_everywhere_else(acme):
    with pytest.raises(ValidationError) as raised:
        api_key_issue(tenant=acme, allowed_models=["gpt-4o", "no-such-model"], rpm_limit=0, budget_period="week")
    assert set(raised.value.message_dict) == {"allowed_models", "rpm_limit", "budget_period"}
    assert "no-such-model" in raised.value.message_dict["allowed_models"][0]


def test_rotation_keeps_the_old_secret_only_for_its_grace(acme):
    from datetime import timedelta

    from accounts.services import api_key_rotate

    issued = api_key_issue(tenant=acme)
    rotated = api_key_rotate(api_key=issued.api_key, grace=timedelta(minutes=5))
    assert rotated.plaintext != issued.plaintext and rotated.api_key.public_id == issued.api_key.public_id
    assert authenticate(issued.plaintext).key_id == authenticate(rotated.plaintext).key_id
    key_cache.clear()
    api_key_rotate(api_key=issued.api_key)  # no grace: both earlier secrets stop
    key_cache.clear()
    for old in (issued.plaintext, rotated.plaintext):
        with pytest.raises(AppError):
            authenticate(old)
    with pytest.raises(ValidationError):
        api_key_rotate(api_key=issued.api_key, grace=timedelta(days=31))


def test_a_tenant_keeps_at_least_one_owner(acme, django_user_model):
    from accounts.models import Membership
    from accounts.services import membership_remove, membership_set

    owner = membership_set(tenant=acme, user=django_user_model.objects.create_user("owen"), role="owner")
    member = membership_set(tenant=acme, user=django_user_model.objects.create_user("mia"), role="member")
    with pytest.raises(ValidationError):
        membership_set(tenant=acme, user=owner.user, role="admin")
    with pytest.raises(ValidationError):
        membership_remove(membership=owner)
    membership_set(tenant=acme, user=member.user, role="owner")
    membership_remove(membership=owner)
    assert list(Membership.objects.filter(tenant=acme).values_list("role", flat=True)) == ["owner"]


def test_concurrent_cache_misses_share_one_key_lookup(acme, monkeypatch):
    import asyncio

    from accounts import selectors

    issued = api_key_issue(tenant=acme)
    fetch, calls = selectors._fetch_principal_async, []

    async def counted(public_id):
        calls.append(public_id)
        await asyncio.sleep(0.01)  # the lookup is in flight while the others arrive
        return await fetch(public_id)

    monkeypatch.setattr(selectors, "_fetch_principal_async", counted)

    async def burst():
        return await asyncio.gather(*(api_key_authenticate(issued.plaintext) for _ in range(32)))

    principals = async_to_sync(burst)()
    assert len(calls) == 1 and {p.key_id for p in principals} == {issued.api_key.pk}


def test_a_cached_key_serves_through_a_database_outage_for_the_stale_grace_then_is_a_503(acme, monkeypatch, settings):
    from django.db import OperationalError

    from accounts import selectors

    issued = api_key_issue(tenant=acme)
    authenticate(issued.plaintext)

    async def unreachable(public_id):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "_fetch_principal_async", unreachable)
    settings.GATEWAY_AUTH_CACHE_SECONDS, settings.GATEWAY_STALE_GRACE_SECONDS = 0, 3600
    assert authenticate(issued.plaintext).key_id == issued.api_key.pk
    settings.GATEWAY_STALE_GRACE_SECONDS = 0
    with pytest.raises(AppError) as expired:
        authenticate(issued.plaintext)
    with pytest.raises(AppError) as unknown:  # a key this process never saw needs the database
        authenticate(api_key_issue(tenant=acme).plaintext)
    for caught in (expired, unknown):
        assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "database_unavailable", 5)


# --- Unknown keys and failed authentications -------------------------------------------------------------


def random_key(length: int = keys.PUBLIC_ID_LENGTH) -> str:
    import secrets

    public_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))
    return f"sk_cdx_{public_id}_{'A' * keys.SECRET_LENGTH}"


def test_issued_ids_carry_a_check_value_that_random_ids_fail(settings):
    public_id = keys.generate()[1]
    assert len(public_id) == keys.PUBLIC_ID_LENGTH and keys.public_id_verifies(public_id)
    assert not any(keys.public_id_verifies(keys.parse(random_key())[0]) for _ in range(1000))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-server-secret", [settings.SECRET_KEY]
    assert keys.public_id_verifies(public_id)  # the previous secret still verifies during a rotation


def test_random_well_formed_keys_cost_no_query(acme, django_assert_num_queries):
    api_key_issue(tenant=acme)
    with pytest.raises(AppError):
        authenticate(random_key(keys.LEGACY_PUBLIC_ID_LENGTH))  # loads the set of legacy ids, once
    with django_assert_num_queries(0):
        for length in (keys.PUBLIC_ID_LENGTH, keys.LEGACY_PUBLIC_ID_LENGTH) * 10:
            with pytest.raises(AppError) as caught:
                authenticate(random_key(length), address=f"10.0.0.{length}")
            assert caught.value.status == 401


def test_legacy_keys_without_a_check_value_still_authenticate(acme):
    issued = api_key_issue(tenant=acme)
    secret = keys.parse(issued.plaintext)[1]
    ApiKey.objects.filter(pk=issued.api_key.pk).update(public_id="legacy000001")
    assert authenticate(f"sk_cdx_legacy000001_{secret}").key_id == issued.api_key.pk


def test_an_address_past_its_failures_gets_429_with_retry_after_and_others_do_not(acme, settings):
    settings.GATEWAY_AUTH_FAILURES, settings.GATEWAY_AUTH_FAILURES_WINDOW_SECONDS = 3, 60
    issued = api_key_issue(tenant=acme)
    statuses = []
    for _ in range(5):
        with pytest.raises(AppError) as caught:
            authenticate(random_key(), address="192.0.2.7")
        statuses.append(caught.value.status)
    assert statuses == [401, 401, 401, 429, 429]
    assert caught.value.retry_after == 60 and caught.value.type == "rate_limit_error"
    with pytest.raises(AppError) as caught:
        authenticate(None, address="192.0.2.8")
    assert caught.value.status == 401
    # A valid key still works from the throttled address (a client behind the same NAT).
    assert authenticate(issued.plaintext, address="192.0.2.7").key_id == issued.api_key.pk
