"""The self-serve dashboard in a real browser: Playwright driving Debian's Chromium (headless).

A gateway process (the production launcher) serves the dashboard's templates, static files and
WebSocket; the browser signs up, makes and revokes a key, watches the usage page update live, uses
the playground, and every page is loaded at a phone's width (no horizontal overflow, labelled fields).

Screenshots (full-page PNGs, overwritten each run) are saved as test artefacts in var/screenshots/
(gitignored): <page>.png at desktop width, <page>-375.png at phone width. The new key's secret is
masked in them.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Playwright's own browser
downloads are never used.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.browser import (
    CHROMIUM,
    MODEL,
    PHONE,
    TIMEOUT_MS,
    TURN_COST,
    chat,
    check_phone_page,
    check_phone_page_here,
    create_key,
    expect,
    openai_client,
    shot,
    sign_up,
    url_re,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium; .ci/run installs it)"),
]


def test_sign_up_create_a_key_see_usage_live_and_revoke_it(new_context, dashboard, django_db_blocker):
    import openai

    page = new_context().new_page()
    sign_up(page, django_db_blocker, screenshot="signup")
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    shot(page, "keys-empty")

    key_name = f"ci-{uuid.uuid4().hex[:6]}"
    secret = create_key(page, key_name)
    assert secret and len(secret) > 20 and " " not in secret
    secret_shown = page.locator("#new-key").or_(page.locator("pre"))  # the snippets contain it too
    shot(page, "key-created", mask=[secret_shown])

    # Shown once: neither the list, nor a reload of it, nor the "created" page again show the secret.
    page.get_by_role("link", name="Done, I copied it").click()
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    row = page.get_by_role("row").filter(has_text=key_name)
    expect(row).to_contain_text("active")
    assert secret not in page.content()
    page.reload()
    assert secret not in page.content()
    shot(page, "keys")
    page.goto("/dashboard/keys/created/")
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    assert secret not in page.content()

    # The usage page is open (and its WebSocket connected) before the call; the request appears without a reload.
    usage = page.context.new_page()
    usage.goto("/dashboard/usage/")
    expect(usage.locator("#live-status")).to_have_text("Live.", timeout=TIMEOUT_MS)
    usage.evaluate("window.__sameDocument = true")
    completion, request_id = chat(openai_client(dashboard, secret), "hello from the browser test")
    assert "hello from the browser test" in completion.choices[0].message.content
    recent = usage.locator("[data-testid=recent-requests]")
    expect(recent).to_contain_text(request_id, timeout=TIMEOUT_MS)
    assert usage.evaluate("window.__sameDocument") is True, "the usage page was reloaded"
    expect(recent.get_by_role("row").filter(has_text=request_id)).to_contain_text(key_name)
    shot(usage, "usage")

    # Revoke in the browser, through the confirmation page; the key stops working within the key cache's 1 s.
    page.goto("/dashboard/keys/")
    page.get_by_role("row").filter(has_text=key_name).get_by_role("link", name="Revoke").click()
    expect(page).to_have_url(url_re(r"/dashboard/keys/\d+/revoke/$"))
    expect(page.get_by_role("heading", name="Revoke this key?")).to_be_visible()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    expect(page.get_by_role("row").filter(has_text=key_name)).to_contain_text("revoked")

    client = openai_client(dashboard, secret)
    deadline = time.monotonic() + 3.5
    while True:
        try:
            chat(client, "after revocation")
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401
            break
        assert time.monotonic() < deadline, "the revoked key still works after 3.5 s"
        time.sleep(0.2)


def test_playground_streams_an_answer_and_shows_the_turns_tokens_and_cost(new_context, django_db_blocker):
    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    page.goto("/dashboard/playground/")
    page.locator("#pg-model").select_option(MODEL)
    page.locator("#pg-input").fill("hello playground")
    page.locator("#pg-send").click()

    transcript = page.locator("#pg-transcript")
    expect(transcript.locator(".turn.user")).to_have_text("hello playground")
    answer = transcript.locator(".turn.assistant").last
    expect(answer).to_contain_text("You said: hello playground", timeout=TIMEOUT_MS)
    cost = answer.locator("[data-testid=turn-cost]")
    expect(cost).to_have_text(TURN_COST, timeout=TIMEOUT_MS)
    expect(page.locator("#pg-send")).to_be_enabled()
    shot(page, "playground")


def test_every_page_fits_a_phone_and_labels_its_fields(new_context, dashboard, django_db_blocker):
    problems: list[str] = []

    anonymous = new_context(PHONE).new_page()
    for url, name in (("/signup/", "signup"), ("/login/", "login"), ("/password-reset/", "password-reset")):
        check_phone_page(anonymous, url, name, problems)
    # Desktop screenshots of the pages the other tests do not visit.
    desktop = new_context().new_page()
    for url, name in (("/login/", "login"), ("/password-reset/", "password-reset")):
        desktop.goto(url)
        shot(desktop, name)

    page = new_context(PHONE).new_page()
    sign_up(page, django_db_blocker)
    check_phone_page(page, "/dashboard/keys/", "keys-empty", problems)
    check_phone_page(page, "/dashboard/keys/new/", "keys-new", problems)
    secret = create_key(page, "phone")
    check_phone_page_here(page, "key-created", problems, mask=[page.locator("#new-key").or_(page.locator("pre"))])
    chat(openai_client(dashboard, secret), "a request so the usage page has tables")  # and a conversation
    page.goto("/dashboard/keys/")
    revoke_url = page.get_by_role("link", name="Revoke").first.get_attribute("href")
    for url, name in (("/dashboard/keys/", "keys"), (revoke_url, "keys-revoke"), ("/dashboard/usage/", "usage"),
                      ("/dashboard/playground/", "playground"), ("/dashboard/conversations/", "conversations"),
                      ("/dashboard/team/", "team"), ("/dashboard/settings/", "settings")):
        check_phone_page(page, url, name, problems)

    # The desktop screenshots of the signed-in pages no other test takes.
    desktop_user = new_context(storage_state=page.context.storage_state()).new_page()
    for url, name in (("/dashboard/conversations/", "conversations"), ("/dashboard/team/", "team"),
                      ("/dashboard/settings/", "settings")):
        desktop_user.goto(url)
        shot(desktop_user, name)

    assert not problems, "\n".join(problems)

