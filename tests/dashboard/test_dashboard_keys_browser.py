"""Issue 20's key and account-state items in a real browser (Playwright driving Debian's Chromium), as
tests/dashboard/test_dashboard_browser.py does: keys edited in place, the models pick list, the banner and budget bars,
one key per form, revoked keys, login in any case, error pages and long names at a phone's width, and an
accessibility pass of the key form (labels, contrast, keyboard only).

Screenshots go to var/screenshots/ like the other browser tests': <page>.png at 1280 px, <page>-375.png at 375.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.support.browser import (
    CHROMIUM,
    LABEL_PROBLEMS_JS,
    MODEL,
    PASSWORD,
    PHONE,
    chat,
    check_phone_page,
    check_phone_page_here,
    create_key,
    expect,
    openai_client,
    outside_the_event_loop,
    shot,
    sign_up,
    url_re,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def db(django_db_blocker, function, *args):
    with django_db_blocker.unblock():
        return outside_the_event_loop(function, *args)


def both_widths(new_context, page, url: str, name: str, problems: list[str]) -> None:
    """Screenshot `url` at 1280 px as <name>.png, and check it at 375 px (overflow, labels): <name>-375.png."""
    page.goto(url)
    shot(page, name)
    phone = new_context(PHONE, storage_state=page.context.storage_state()).new_page()
    response = phone.goto(url)
    assert response is not None
    phone.wait_for_load_state("networkidle")
    check_phone_page_here(phone, name, problems)


def _tenant_of(email: str):
    from accounts.models import Membership

    return Membership.objects.select_related("tenant").get(user__email=email).tenant


def _spend(key_name: str, cost_nano: int) -> None:
    from django.utils import timezone

    from accounts.models import ApiKey
    from billing.models import UsageEvent

    api_key = ApiKey.objects.get(name=key_name)
    UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant_id=api_key.tenant_id, api_key=api_key,
        endpoint="chat.completions", requested_model=MODEL, model=MODEL, upstream_model=MODEL, stream=False,
        input_tokens=100, output_tokens=100, cost_nano=cost_nano, status=UsageEvent.Status.OK, http_status=200,
        latency_ms=5, created_at=timezone.now())


def _suspend(email: str) -> None:
    from accounts.services import tenant_set_status

    tenant_set_status(tenant=_tenant_of(email), status="suspended")


def _add_member(owner_email: str, member_email: str) -> int:
    """A member of the owner's tenant; returns the owner's membership id (a page members may not open)."""
    from django.contrib.auth import get_user_model

    from accounts.models import Membership
    from accounts.services import membership_set

    tenant = _tenant_of(owner_email)
    user = get_user_model().objects.create_user(username=member_email, email=member_email, password=PASSWORD)
    membership_set(tenant=tenant, user=user, role="member")
    return Membership.objects.get(tenant=tenant, user__email=owner_email).pk


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def fill_key_form(page, name: str) -> None:
    page.goto("/dashboard/keys/new/")
    page.get_by_label(re.compile(r"^Name:?$")).fill(name)


def test_a_key_is_edited_in_place_with_models_picked_from_the_catalog(new_context, dashboard, django_db_blocker):
    import openai

    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    problems: list[str] = []
    fill_key_form(page, "editable")
    models = page.get_by_role("group", name="Models")
    expect(models.get_by_label(re.compile(r"gpt-4o \(alias of claude-sonnet-4-6\) · \$3\.00 in, \$15\.00 out"))
           ).to_be_visible()
    expect(page.get_by_text("by at most one request's reservation")).to_be_visible()
    models.get_by_label(re.compile(rf"{MODEL} · chat · ")).check()
    shot(page, "keys-new")
    page.get_by_role("button", name="Create the key").click()
    secret = page.locator("#new-key").inner_text().strip()
    page.get_by_role("link", name="Done, I copied it").click()

    page.get_by_role("row").filter(has_text="editable").get_by_role("link", name="Edit").click()
    expect(page).to_have_url(url_re(r"/dashboard/keys/\d+/edit/$"))
    expect(page.get_by_label(re.compile(rf"{MODEL} · chat · "))).to_be_checked()
    edit_url = page.url
    page.get_by_label(re.compile(r"^Name:?$")).fill("edited-in-place")
    page.get_by_label(re.compile(r"^Requests per minute:?$")).fill("60")
    page.get_by_label("Budget (USD)").fill("5")
    page.get_by_label(re.compile(r"gpt-4o \(alias")).check()
    shot(page, "keys-edit")
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    row = page.get_by_role("row").filter(has_text="edited-in-place")
    expect(row).to_contain_text(f"Models: {MODEL}, gpt-4o")
    expect(row).to_contain_text("RPM: 60")
    expect(row).to_contain_text("$5.00 per month")
    both_widths(new_context, page, edit_url, "keys-edit", problems)

    # The new allow-list applies to the API within the key cache's second.
    client, deadline = openai_client(dashboard, secret), time.monotonic() + 3.5
    while True:
        try:
            client.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
        except openai.PermissionDeniedError:
            break
        assert time.monotonic() < deadline, "the edited allow-list did not apply within 3.5 s"
        time.sleep(0.2)
    assert not problems, "\n".join(problems)


CONTRAST_JS = """(root) => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const problems = [];
  for (const el of root.querySelectorAll("label, legend, .help, button, .button, input, select, h1, p, a")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || !el.textContent.trim() && !["INPUT", "SELECT"].includes(el.tagName)) continue;
    const fg = lum(parse(getComputedStyle(el).color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) problems.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 40)}": ${ratio.toFixed(2)}`);
  }
  return problems;
}"""


def test_the_key_form_is_labelled_in_contrast_and_usable_with_the_keyboard_alone(new_context, django_db_blocker):
    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    page.goto("/dashboard/keys/new/")
    assert page.evaluate(LABEL_PROBLEMS_JS) == []
    assert page.locator("main form").evaluate(CONTRAST_JS) == []
    assert page.locator("main").evaluate(CONTRAST_JS) == []

    # Tab from the top of the page: every field of the form is reached in order, each with a visible focus ring.
    page.locator("body").focus()
    order, rings = [], []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const el = document.activeElement;
          return {id: el.id, text: el.textContent.trim(), outline: getComputedStyle(el).outlineStyle}; }""")
        order.append(focused["id"] or focused["text"])
        rings.append(focused["outline"])
        if focused["text"] == "Create the key":
            break
    fields = ["id_name", "id_models_0", "id_rpm_limit", "id_tpm_limit", "id_budget_usd", "id_budget_period",
              "id_expires_at"]
    # (list(dict.fromkeys()): a datetime-local input is one Tab stop per part of the date.)
    assert list(dict.fromkeys(item for item in order if item in fields)) == fields, order
    assert order[-1] == "Create the key", order
    assert [item for item, ring in zip(order, rings) if ring == "none"] == [], list(zip(order, rings))

    # Keyboard only: type a name, tick the first model with Space, send with Enter on the button.
    page.goto("/dashboard/keys/new/")
    page.locator("body").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "id_name":
            break
    page.keyboard.type("keyboard-only")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_models_0"
    page.keyboard.press("Space")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Create the key":
            break
    page.keyboard.press("Enter")
    expect(page).to_have_url(url_re("/dashboard/keys/created/$"))
    page.goto("/dashboard/keys/")
    expect(page.get_by_role("row").filter(has_text="keyboard-only")).to_contain_text("Models: claude-haiku-4-5")


def test_the_banner_and_the_budget_bars_say_why_requests_fail(new_context, dashboard, django_db_blocker):
    import openai

    page = new_context().new_page()
    email = sign_up(page, django_db_blocker)
    problems: list[str] = []
    secrets = {}
    for name in ("over-key", "calm-key"):
        fill_key_form(page, name)
        page.get_by_label("Budget (USD)").fill("1")
        page.get_by_role("button", name="Create the key").click()
        secrets[name] = page.locator("#new-key").inner_text().strip()
    db(django_db_blocker, _spend, "over-key", 1_350_000_000)
    db(django_db_blocker, _spend, "calm-key", 100_000_000)

    page.goto("/dashboard/keys/")
    banner = page.get_by_test_id("account-alerts")
    expect(banner.locator("[data-alert=budget-reached]")).to_contain_text("Budget reached for over-key")
    over, calm = (page.get_by_role("row").filter(has_text=name) for name in ("over-key", "calm-key"))
    expect(over.locator("[data-label=Status]")).to_have_text("over budget")
    expect(calm.locator("[data-label=Status]")).to_have_text("active")
    expect(over.get_by_test_id("budget")).to_have_class(re.compile(r"\bover\b"))
    expect(over).to_contain_text("Over budget: $1.35 spent of $1.00 this month (135%)")
    expect(calm).to_contain_text("$0.10 spent of $1.00 this month (10%)")
    # 135 % looks different from 10 %: a full red bar against a tenth of a blue one.
    colours = [row.locator(".budget-bar .settled").evaluate(
        "el => [getComputedStyle(el).backgroundImage, el.getBoundingClientRect().width / "
        "el.parentElement.getBoundingClientRect().width]") for row in (over, calm)]
    assert colours[0][0] != colours[1][0] and colours[0][1] > 0.99 and 0.05 < colours[1][1] < 0.15, colours
    both_widths(new_context, page, "/dashboard/keys/", "keys-over-budget", problems)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(openai_client(dashboard, secrets["over-key"]), "over budget")
    assert refused.value.code == "insufficient_quota"

    # Suspended: every page says so, the member's too, and the API refuses.
    member = f"member-{uuid.uuid4().hex[:8]}@example.com"
    db(django_db_blocker, _add_member, email, member)
    db(django_db_blocker, _suspend, email)
    for url in ("/dashboard/usage/", "/dashboard/playground/", "/dashboard/team/"):
        page.goto(url)
        expect(page.locator("[data-alert=suspended]")).to_contain_text("This workspace is suspended")
    both_widths(new_context, page, "/dashboard/usage/", "banner-suspended", problems)
    member_page = new_context().new_page()
    log_in(member_page, member)
    expect(member_page.locator("[data-alert=suspended]")).to_be_visible()
    with pytest.raises(openai.PermissionDeniedError) as suspended:
        chat(openai_client(dashboard, secrets["calm-key"]), "suspended")
    assert suspended.value.code == "account_suspended"
    assert not problems, "\n".join(problems)


def test_a_double_submitted_key_form_makes_one_key_and_its_secret_is_shown(new_context, django_db_blocker):
    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    # Two POSTs of the same form at once, as a double click or a retrying proxy would send them.
    fill_key_form(page, "sent-twice")
    statuses = page.evaluate("""async () => {
      const form = document.querySelector("form[data-submit-once]");
      const send = () => fetch(form.action, {method: "POST", body: new FormData(form), redirect: "manual"});
      const responses = await Promise.all([send(), send()]);
      return responses.map((r) => r.type);
    }""")
    assert statuses == ["opaqueredirect", "opaqueredirect"]
    page.goto("/dashboard/keys/created/")
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^sk_cdx_"))  # the one key's secret, shown once
    page.goto("/dashboard/keys/")
    expect(page.get_by_role("row").filter(has_text="sent-twice")).to_have_count(1)

    # A double click on the button sends the form once.
    fill_key_form(page, "double-clicked")
    page.get_by_role("button", name="Create the key").dblclick()
    expect(page).to_have_url(url_re("/dashboard/keys/created/$"))
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^sk_cdx_"))
    page.goto("/dashboard/keys/")
    expect(page.get_by_role("row").filter(has_text="double-clicked")).to_have_count(1)


def test_a_revoked_key_is_told_so_on_the_api_and_revoked_keys_can_be_hidden(new_context, dashboard,
                                                                            django_db_blocker):
    import openai

    page = new_context().new_page()
    sign_up(page, django_db_blocker)
    secret = create_key(page, "to-revoke")
    create_key(page, "to-keep")
    page.goto("/dashboard/keys/")
    page.get_by_role("row").filter(has_text="to-revoke").get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke the key").click()
    client, deadline = openai_client(dashboard, secret), time.monotonic() + 3.5
    while True:
        try:
            chat(client, "after revocation")
        except openai.AuthenticationError as exc:
            assert exc.code == "revoked_api_key" and "revoked" in exc.message
            break
        assert time.monotonic() < deadline, "the revoked key still works after 3.5 s"
        time.sleep(0.2)

    page.get_by_role("link", name="Hide revoked keys (1)").click()
    expect(page.get_by_role("row").filter(has_text="to-revoke")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text="to-keep")).to_have_count(1)
    shot(page, "keys-revoked-hidden")
    page.get_by_role("link", name="Show revoked keys (1)").click()
    expect(page.get_by_role("row").filter(has_text="to-revoke")).to_contain_text("revoked")


def test_login_accepts_the_email_as_typed_at_sign_up(new_context):
    email = f"Dana.Smith.{uuid.uuid4().hex[:6]}@Example.com"
    page = new_context().new_page()
    page.goto("/signup/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("Workspace name").fill("Dana Co")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    page.get_by_role("button", name="Log out").click()
    log_in(page, email)
    expect(page).to_have_url(url_re("/dashboard/keys/$"))


def test_error_pages_long_names_and_the_landing_page_fit_a_phone(new_context, django_db_blocker):
    problems: list[str] = []
    anonymous = new_context(PHONE).new_page()
    check_phone_page(anonymous, "/", "index", problems)
    desktop = new_context().new_page()
    desktop.goto("/")
    shot(desktop, "index")

    page = new_context().new_page()
    email = sign_up(page, django_db_blocker)
    long_name = "x" * 100
    create_key(page, long_name)
    page.goto("/dashboard/settings/")
    page.get_by_label("Workspace name").last.fill("W" * 120)
    page.get_by_role("button", name="Rename").click()
    both_widths(new_context, page, "/dashboard/keys/", "keys-long-names", problems)
    both_widths(new_context, page, "/dashboard/usage/", "usage", problems)

    response = page.goto("/dashboard/keys/999999/edit/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="This page doesn't exist")).to_be_visible()
    expect(page.get_by_role("navigation", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Your API keys").click()
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
    both_widths(new_context, page, "/dashboard/keys/999999/edit/", "404", problems)

    member = f"member-{uuid.uuid4().hex[:8]}@example.com"
    owner_membership = db(django_db_blocker, _add_member, email, member)
    member_page = new_context().new_page()
    log_in(member_page, member)
    response = member_page.goto(f"/dashboard/team/{owner_membership}/remove/")
    assert response.status == 403
    expect(member_page.get_by_role("heading", name="You can't open this page")).to_be_visible()
    both_widths(new_context, member_page, f"/dashboard/team/{owner_membership}/remove/", "403", problems)
    assert not problems, "\n".join(problems)
