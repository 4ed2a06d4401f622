"""Driving the dashboard in Chromium (Playwright's sync API): signing up, making a key, chatting, checking a
page at a phone's width, screenshots. The fixtures (`dashboard`, `browser`, `new_context`) are in
tests/dashboard/conftest.py.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Playwright's own browser
downloads are never used. Screenshots (full-page PNGs, overwritten each run) go to var/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .env import ROOT

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


def url_re(path: str) -> re.Pattern:
    return re.compile(r"^https?://[^/]+" + path)


sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
expect = sync_api.expect


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
    expect(page).to_have_url(url_re("/dashboard/keys/$"))
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
    expect(page).to_have_url(url_re("/dashboard/keys/created/$"))
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
