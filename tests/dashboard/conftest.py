"""Fixtures of the dashboard's tests: a gateway serving the dashboard with its static files, Chromium on
it (the browser tests), and the operators' console's two tenants.

tests.support.browser is imported where used: it skips a module without Playwright, which here would
skip every dashboard test.
"""

from __future__ import annotations

import pytest

from accounts.services import tenant_create
from tests.support.e2e import start_gateway, stop_process


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
    stop_process(process)


@pytest.fixture(scope="module")
def browser(dashboard):
    # After `dashboard` (and the test database): Playwright's sync API runs an event loop in this thread,
    # where Django refuses synchronous database calls.
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser, dashboard):
    """new_context(viewport=...) -> a fresh browser context (own cookies) on the dashboard's origin."""
    from tests.support.browser import DESKTOP

    contexts = []

    def make(viewport: dict = DESKTOP, **options):
        context = browser.new_context(base_url=dashboard, viewport=viewport, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def acme():
    return tenant_create(slug="console-acme", name="Acme")


@pytest.fixture
def globex():
    return tenant_create(slug="console-globex", name="Globex")
