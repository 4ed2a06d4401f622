"""The usage page's filters, the playground (keyboard, Stop, kept conversations) and the conversations
list in Debian's Chromium, as tests/dashboard/test_dashboard_browser.py drives it (same fixtures, same screenshot
folder: var/screenshots/<page>.png at 1280 px, <page>-375.png at 375 px)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.browser import (
    CHROMIUM,
    LABEL_PROBLEMS_JS,
    MODEL,
    PHONE,
    TIMEOUT_MS,
    TURN_COST,
    chat,
    check_phone_page,
    create_key,
    openai_client,
    outside_the_event_loop,
    shot,
    sign_up,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
expect = sync_api.expect
SLOW = "[[fake:words=3000, chunk_delay_ms=50]]"  # an answer that takes long enough to be stopped


def playground_rows(email: str) -> list[tuple[str, str]]:
    from billing.models import UsageEvent

    return list(UsageEvent.objects.filter(api_key__created_by__email=email, api_key__name="Playground")
                .order_by("created_at").values_list("request_id", "status"))


def playground_conversations(email: str) -> list[tuple[str, int]]:
    from conversations.models import Conversation

    return list(Conversation.objects.filter(api_key__created_by__email=email, api_key__name="Playground")
                .values_list("id", "message_count"))


def db(django_db_blocker, function, *args):
    with django_db_blocker.unblock():
        return outside_the_event_loop(function, *args)


def test_usage_filters_by_range_key_and_model_and_exports_what_it_shows(new_context, dashboard, django_db_blocker):
    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    prod, dev = create_key(page, "prod-key"), create_key(page, "dev-key")
    chat(openai_client(dashboard, prod), "from prod")
    chat(openai_client(dashboard, dev), "from dev")

    page.goto("/dashboard/usage/")
    expect(page.locator("[data-testid=total-requests]")).to_have_text("2")
    page.get_by_label("Key", exact=True).select_option(label="dev-key")
    page.get_by_label("Model", exact=True).select_option(MODEL)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-testid=total-requests]")).to_have_text("1")
    recent = page.locator("[data-testid=recent-requests]")
    expect(recent).to_contain_text("dev-key")
    expect(recent).not_to_contain_text("prod-key")
    expect(page.locator(".chart svg text.axis").first).to_be_visible()  # the scale and the dates are drawn
    page.locator("[data-testid=per-day] summary").click()
    today = datetime.now(UTC).date()
    expect(page.locator("[data-testid=per-day]").get_by_role("row").filter(
        has_text=today.strftime("%a %b %-d, %Y"))).to_contain_text("1")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    exported = open(download.value.path()).read()
    assert exported.splitlines()[0].startswith("date,key,key_id,model,")
    assert "dev-key" in exported and "prod-key" not in exported
    shot(page, "usage-filtered")

    # A bad range: a clear error next to the field, the page still there.
    page.get_by_label("From", exact=True).fill((today + timedelta(days=3)).isoformat())
    page.get_by_label("To", exact=True).fill(today.isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("The start must be on or before the end.")
    shot(page, "usage-range-error")

    phone = new_context(PHONE, storage_state=page.context.storage_state()).new_page()
    problems: list[str] = []
    check_phone_page(phone, f"/dashboard/usage/?key=&model={MODEL}", "usage-filtered", problems)
    assert not problems, "\n".join(problems)


def test_playground_by_keyboard_enter_sends_stop_cuts_and_turns_are_kept(new_context, django_db_blocker):
    page = new_context().new_page()
    email = sign_up(page, django_db_blocker)
    page.goto("/dashboard/playground/")
    assert page.evaluate(LABEL_PROBLEMS_JS) == []

    # Keyboard only: Tab from the model picker to the message; Shift+Enter is a new line, Enter sends.
    page.locator("#pg-model").focus()
    page.locator("#pg-model").select_option(MODEL)
    page.keyboard.press("Tab")
    expect(page.locator("#pg-system")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#pg-input")).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(page.locator("#pg-input")).to_have_value("first line\nsecond line")
    page.keyboard.press("Enter")
    transcript = page.locator("#pg-transcript")
    expect(transcript.locator(".turn.user").first).to_have_text("first line\nsecond line")
    first = transcript.locator(".turn.assistant").first
    expect(first.locator("[data-testid=turn-cost]")).to_have_text(TURN_COST, timeout=TIMEOUT_MS)
    expect(page.locator("#pg-input")).to_be_focused()
    expect(page.locator("#pg-input")).to_have_value("")
    link = page.locator("#pg-conversation a")
    expect(link).to_have_text(_re_conversation())
    conversation_id = link.inner_text()

    # The second turn continues the same stored conversation.
    page.keyboard.type("and a second question")
    page.keyboard.press("Enter")
    second = transcript.locator(".turn.assistant").nth(1)
    expect(second).to_contain_text("You said: and a second question", timeout=TIMEOUT_MS)
    expect(second.locator("[data-testid=turn-cost]")).to_have_text(TURN_COST, timeout=TIMEOUT_MS)
    assert db(django_db_blocker, playground_conversations, email) == [(conversation_id, 4)]

    # Stop, by keyboard: Tab to the Stop button while the answer streams, press it; billed as partial.
    page.keyboard.type(f"a long one {SLOW}")
    page.keyboard.press("Enter")
    third = transcript.locator(".turn.assistant").nth(2)
    expect(third).to_contain_text("alpha bravo", timeout=TIMEOUT_MS)
    expect(page.locator("#pg-stop")).to_be_enabled()
    page.keyboard.press("Tab")  # past the key hint, which is text: the next control is Send (disabled), then Stop
    expect(page.locator("#pg-stop")).to_be_focused()
    page.keyboard.press("Enter")
    meta = third.locator("[data-testid=turn-cost]")
    expect(meta).to_contain_text("Stopped: billed as partial", timeout=TIMEOUT_MS)
    expect(page.locator("#pg-send")).to_be_enabled()
    expect(page.locator("#pg-stop")).to_be_disabled()
    expect(page.locator("#pg-input")).to_be_focused()
    shot(page, "playground-stopped")
    rows = db(django_db_blocker, playground_rows, email)
    assert [status for _, status in rows] == ["ok", "ok", "partial"]
    words = len(third.inner_text().split())
    assert words < 3000, "the stream was not cut"
    time.sleep(1)
    assert len(third.inner_text().split()) == words  # nothing arrives after the stop

    # Escape stops too; the conversation goes on afterwards.
    page.keyboard.type(f"another long one {SLOW}")
    page.keyboard.press("Enter")
    fourth = transcript.locator(".turn.assistant").nth(3)
    expect(fourth).to_contain_text("alpha bravo", timeout=TIMEOUT_MS)
    page.keyboard.press("Escape")
    expect(fourth.locator("[data-testid=turn-cost]")).to_contain_text("Stopped: billed as partial",
                                                                      timeout=TIMEOUT_MS)
    page.keyboard.type("after the stop")
    page.keyboard.press("Enter")
    expect(transcript.locator(".turn.assistant").nth(4)).to_contain_text("You said: after the stop",
                                                                         timeout=TIMEOUT_MS)
    expect(transcript.locator(".turn.assistant").nth(4).locator("[data-testid=turn-cost]")).to_have_text(
        TURN_COST, timeout=TIMEOUT_MS)
    assert db(django_db_blocker, playground_conversations, email) == [(conversation_id, 6)]

    # Listed under Conversations by its first words, model and turns.
    page.get_by_role("link", name="Conversations", exact=True).first.click()
    row = page.get_by_role("row").filter(has_text=conversation_id)
    expect(row).to_contain_text("first line second line")
    expect(row).to_contain_text(MODEL)
    expect(row.locator("[data-label=Turns]")).to_have_text("3")
    expect(row).to_contain_text("Playground")
    shot(page, "conversations-listed")
    phone = new_context(PHONE, storage_state=page.context.storage_state()).new_page()
    problems: list[str] = []
    check_phone_page(phone, "/dashboard/conversations/", "conversations-listed", problems)
    check_phone_page(phone, "/dashboard/playground/", "playground", problems)
    assert not problems, "\n".join(problems)


def _re_conversation():
    return re.compile(r"^conv_[0-9a-f]+$")


def make_operator(username: str, password: str) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser(username, f"{username}@example.com", password)


def tenant_id_of(email: str) -> int:
    from accounts.models import Membership

    return Membership.objects.get(user__email=email).tenant_id


def audit_details(tenant_id: int, action: str) -> list[dict]:
    from accounts.models import AuditEntry

    return list(AuditEntry.objects.filter(tenant_id=tenant_id, action=action).values_list("details", flat=True))


def test_operator_grants_credit_and_suspends_from_the_tenants_page(new_context, dashboard, django_db_blocker):
    customer = new_context().new_page()
    email = sign_up(customer, django_db_blocker, credit_usd=0)
    tenant_id = db(django_db_blocker, tenant_id_of, email)
    username, password = f"op-{tenant_id}", "Operator-pw-42!"
    db(django_db_blocker, make_operator, username, password)

    page = new_context().new_page()
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#site-name")).to_have_text("Gatehouse console")
    expect(page.locator("#recent-actions-module")).to_contain_text("tenant.create")
    shot(page, "admin-index")

    page.goto(f"/admin/accounts/tenant/?q={email}")  # found by a member's e-mail
    page.get_by_role("link", name=re.compile(r"^browser-test-co")).first.click()
    tenant_page = page.url
    shot(page, "admin-tenant")
    page.get_by_role("button", name="Grant credit…").click()
    page.get_by_label("Amount (USD)").fill("12.50")
    page.get_by_label("Reason").fill("welcome credit")
    shot(page, "admin-grant-credit")
    page.get_by_role("button", name="Grant credit").click()
    assert page.url == tenant_page
    expect(page.locator(".messagelist")).to_contain_text("Granted $12.50")

    page.get_by_role("button", name="Suspend…").click()
    page.get_by_label("Reason").fill("card declined")
    page.get_by_role("button", name="Suspend").click()
    assert page.url == tenant_page
    expect(page.get_by_role("button", name="Resume…")).to_be_visible()
    assert db(django_db_blocker, audit_details, tenant_id, "tenant.suspend") == [{"reason": "card declined"}]

    # Its records, one click away; the key filter lists this tenant's keys only.
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page).to_have_url(re.compile(rf"tenant__id__exact={tenant_id}"))
    shot(page, "admin-usage")
    page.goto("/admin/gateway/catalogmodel/")
    page.get_by_role("link", name=MODEL, exact=True).click()
    expect(page.locator(".price-in-force").first).to_be_visible()
    expect(page.locator('input[name="prices-0-input_usd"]')).to_have_count(0)
    shot(page, "admin-catalog-model")

    phone = new_context(PHONE, storage_state=page.context.storage_state()).new_page()
    for url, name in ((tenant_page, "admin-tenant"), ("/admin/", "admin-index"),
                      ("/admin/gateway/catalogmodel/", "admin-catalog")):
        phone.goto(url)
        shot(phone, f"{name}-375")
