"""Browser tests: Debian's Chromium driven by Playwright (sync API) against a live server.

Shared by every browser test. What you get:

- ``browser`` (module): one Chromium per test module, launched with the flags in
  ``CHROMIUM_ARGS`` from ``/usr/bin/chromium`` (override with ``SELCONTROL_CHROMIUM``).
- ``console`` (function): the live server's base URL (pytest-django's ``live_server``, which serves
  static files through the staticfiles handler), with the database as the migrations left it.
  Tests using it are transactional, and pytest-django empties every table after each one; so
  before each test the project's data migrations (every ``RunPython`` of the project's own apps:
  the ``prompts_v2`` rollout and its phases, the role groups, default prices...) are re-run when
  the ``prompts_v2`` rollout is missing. (``serialized_rollback`` would do the same, but it
  serializes every table, which breaks as soon as any model lacks its migration.)
- ``page`` (function): a fresh browser context (1280x900) and page. Every ``confirm()`` is
  accepted; every ``prompt()`` is answered with ``page.prompt_answer`` (set it before the click;
  defaults to "e2e"). Default timeout 5 s (15 s for a navigation).
- ``phone_page`` (function): the same with a 390x844 phone viewport and touch.
- ``login(page, user)``: log a persona in through the login form (users from tests/conftest.py:
  ``alice`` operator, ``bob`` reviewer, ``carol`` viewer; password ``PASSWORD``).
- ``htmx_idle(page)``: wait until no htmx request is in flight (call it after a change, before
  the next interaction: the other sections refresh themselves after every change).
- ``screenshot(page, name)``: save ``docs/screenshots/<name>.png`` (full page).

Mark browser tests with ``@pytest.mark.e2e``; run them with ``make e2e`` or
``./scripts/test tests/e2e``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls made by fixtures and
# tests here are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from tests.conftest import PASSWORD, replay_data_migrations  # noqa: E402

CHROMIUM = os.environ.get("SELCONTROL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this thread
    # while it is started, and pytest-django runs transactional tests (these) between others that
    # call asyncio.run(); stopping Playwright after each module gives the thread back.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console(live_server, transactional_db) -> str:
    """The live server's base URL, e.g. http://localhost:41234 (no trailing slash)."""
    from rollout.models import Rollout

    if not Rollout.objects.filter(key="prompts_v2").exists():
        replay_data_migrations()
    return live_server.url


def _new_page(browser: Browser, base_url: str, **context_args) -> Page:
    context = browser.new_context(base_url=base_url, **context_args)
    context.set_default_timeout(5000)
    # A whole page load waits for every script (plotly.min.js is 4.6 MB to parse): on a loaded
    # 2-core machine that alone has taken over 5 s. Page speed is measured in bench/, not here.
    context.set_default_navigation_timeout(15000)
    page = context.new_page()
    page.prompt_answer = "e2e"

    def on_dialog(dialog):
        if dialog.type == "prompt":
            dialog.accept(page.prompt_answer)
        else:
            dialog.accept()

    page.on("dialog", on_dialog)
    return page


@pytest.fixture
def page(browser: Browser, console: str) -> Iterator[Page]:
    page = _new_page(browser, console, viewport=DESKTOP)
    yield page
    page.context.close()


@pytest.fixture
def phone_page(browser: Browser, console: str) -> Iterator[Page]:
    page = _new_page(browser, console, viewport=PHONE, is_mobile=True, has_touch=True)
    yield page
    page.context.close()


def login(page: Page, user) -> None:
    """Log ``user`` in through the login form and wait for the console to load."""
    page.goto("/login/")
    page.fill("#id_username", user.get_username())
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def htmx_idle(page: Page) -> None:
    """Wait until no htmx request is in flight (e.g. the sections refreshing after a change), so
    that the next interaction does not land on a fragment about to be replaced."""
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save docs/screenshots/<name>.png; use full_page=False for modal dialogs (their backdrop
    covers the viewport only).

    ``caret="initial"``: Playwright's default hides the text caret by injecting a <style>, which
    the Content-Security-Policy refuses, and later DOM updates then log CSP violations that
    would fail a test checking the console for them.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, caret="initial")
    return path
