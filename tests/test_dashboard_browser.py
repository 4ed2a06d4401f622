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

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import ROOT, _stop, start_gateway

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots"
# Without the background-networking flags Chromium keeps calling home, which floods a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "Browser-test-pw-42!"
MODEL = "claude-sonnet-4-6"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
TIMEOUT_MS = 5000  # for anything the page does by itself (live usage, a streamed answer)
TURN_COST = re.compile(r"^[1-9]\d* tokens in, [1-9]\d* out · \$\d")
_re = re.compile


def _url_re(path: str) -> re.Pattern:
    return re.compile(r"^https?://[^/]+" + path)


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium; .ci/run installs it)"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
expect = sync_api.expect


@pytest.fixture(scope="module")
def dashboard(gateway_db_url, fake_upstream):
    """Base URL of a gateway that also serves the dashboard's static files.

    The launcher serves /static only when var/static exists (`collectstatic`, as the Dockerfile does), and
    only if it exists when the launcher starts, so this module collects them and starts a gateway of its
    own rather than relying on the session one (possibly started earlier without them).

    Session and CSRF cookies stay `Secure` (DEBUG is off): Chromium keeps Secure cookies for
    http://127.0.0.1, a potentially trustworthy origin, so no SECURE_COOKIES=false is needed.
    """
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    url, process = start_gateway(gateway_db_url, fake_upstream)
    yield url
    _stop(process)


@pytest.fixture(scope="module")
def browser(dashboard):
    # After `dashboard` (and the test database): Playwright's sync API runs an event loop in this thread,
    # where Django refuses synchronous database calls.
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser, dashboard):
    """new_context(viewport=...) -> a fresh browser context (own cookies) on the dashboard's origin."""
    contexts = []

    def make(viewport: dict = DESKTOP, **options):
        context = browser.new_context(base_url=dashboard, viewport=viewport, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def shot(page, name: str, **kwargs) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, **kwargs)


def sign_up(page, django_db_blocker, *, screenshot: str | None = None, credit_usd: int = 100) -> str:
    """Sign up in the browser (e-mail, password, workspace), then grant the new tenant credit as the
    operator would (sign-ups start with none, and requests are refused 429 until then). Returns the e-mail."""
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    page.goto("/signup/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label(_re(r"^Password:?$")).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("Workspace name").fill("Browser Test Co")
    if screenshot:
        shot(page, screenshot)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(_url_re("/dashboard/keys/$"))
    if credit_usd:
        with django_db_blocker.unblock():
            outside_the_event_loop(grant_credit, email, credit_usd * 10**9)
    return email


def grant_credit(email: str, amount_nano: int) -> None:
    from accounts.models import Membership
    from billing.services import credit_grant

    tenant = Membership.objects.select_related("tenant").get(user__email=email).tenant
    credit_grant(tenant=tenant, amount_nano=amount_nano, reason="browser test: the operator's grant")


def outside_the_event_loop(function, *args):
    """Run ORM code in a thread of its own: Playwright's sync API keeps an event loop running in this one,
    where Django refuses database calls (SynchronousOnlyOperation)."""
    from django.db import connections

    def run():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def create_key(page, name: str) -> str:
    """Create a key in the browser; returns its secret, read from the one page that shows it."""
    page.goto("/dashboard/keys/new/")
    page.get_by_label(_re(r"^Name:?$")).fill(name)
    page.get_by_role("button", name="Create the key").click()
    expect(page).to_have_url(_url_re("/dashboard/keys/created/$"))
    return page.locator("#new-key").inner_text().strip()


def openai_client(base: str, key: str):
    import openai

    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=10)


def chat(client, text: str):
    """A chat completion; returns (completion, request id from the response headers)."""
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": text}])
    request_id = raw.headers.get("x-request-id") or raw.headers.get("request-id")
    assert request_id, dict(raw.headers)
    return raw.parse(), request_id


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
    expect(page).to_have_url(_url_re("/dashboard/keys/$"))
    row = page.get_by_role("row").filter(has_text=key_name)
    expect(row).to_contain_text("active")
    assert secret not in page.content()
    page.reload()
    assert secret not in page.content()
    shot(page, "keys")
    page.goto("/dashboard/keys/created/")
    expect(page).to_have_url(_url_re("/dashboard/keys/$"))
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
    expect(page).to_have_url(_url_re(r"/dashboard/keys/\d+/revoke/$"))
    expect(page.get_by_role("heading", name="Revoke this key?")).to_be_visible()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page).to_have_url(_url_re("/dashboard/keys/$"))
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


LABEL_PROBLEMS_JS = """() => {
  const fields = [...document.querySelectorAll("input, select, textarea")].filter((el) => {
    if (["hidden", "submit", "button", "reset", "image"].includes(el.type)) return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden";
  });
  const labelled = (el) => {
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    if (ids.some((id) => (document.getElementById(id)?.textContent || "").trim())) return true;
    return [...(el.labels || [])].some((label) => label.textContent.trim());
  };
  return fields.filter((el) => !labelled(el)).map((el) => el.outerHTML.slice(0, 120));
}"""
OVERFLOW_JS = """() => {
  const limit = window.innerWidth + 1;
  const width = document.documentElement.scrollWidth;
  if (width <= limit) return null;
  const wide = [...document.body.querySelectorAll("*")]
    .filter((el) => el.getBoundingClientRect().right > limit)
    .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                 (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : ""));
  return {scrollWidth: width, innerWidth: window.innerWidth, widest: wide.slice(0, 8)};
}"""


def check_phone_page(page, url: str, name: str, problems: list[str]) -> None:
    response = page.goto(url)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    page.wait_for_load_state("networkidle")
    check_phone_page_here(page, name, problems)


def check_phone_page_here(page, name: str, problems: list[str], **shot_options) -> None:
    """The page already open fits the phone's width and labels its fields; screenshot <name>-375.png."""
    overflow = page.evaluate(OVERFLOW_JS)
    if overflow:
        problems.append(f"{page.url}: horizontal overflow at {PHONE['width']} px: {overflow}")
    unlabelled = page.evaluate(LABEL_PROBLEMS_JS)
    if unlabelled:
        problems.append(f"{page.url}: fields without an accessible label: {unlabelled}")
    shot(page, f"{name}-375", **shot_options)


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

