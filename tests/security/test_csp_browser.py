"""Real Chromium under the real Content-Security-Policy: the console, the dashboard, the admin and
the API docs load without a single CSP violation (so no inline script, inline style, eval or
third-party host has crept into a page). Plotly's attempt to inject its own stylesheet is the one
expected violation: the same rules are served as static/css/plotly-csp.css."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.e2e.conftest import browser, console, login, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push({
  directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile,
  line: e.lineNumber, sample: e.sample, page: location.pathname}));
"""


def expected(violation: dict) -> bool:
    return violation["directive"] == "style-src-elem" and violation["source"].endswith(
        "plotly.min.js"
    )


def visit(page, paths: list[str]) -> list[dict]:  # noqa: F811
    found: list[dict] = []
    for path in paths:
        response = page.goto(path)
        assert response.status < 400, f"{path}: {response.status}"
        assert "Content-Security-Policy" in {k.title(): v for k, v in response.headers.items()}
        page.wait_for_load_state("networkidle")
        found += [v for v in page.evaluate("window.__csp") if not expected(v)]
    return found


def test_console_pages__strict_csp__no_violations(page, alice, rollout):  # noqa: F811
    page.context.add_init_script(COLLECT)
    login(page, alice)
    key = rollout.key
    paths = [
        reverse("rollout:index"),
        reverse("rollout:detail", args=[key]),
        reverse("rollout:audit"),
        reverse("rollout:tokens"),
        reverse("metrics:home"),
        reverse("metrics:dashboard", args=[key]),
        "/api/v1/docs",
    ]
    assert visit(page, paths) == []


def test_login_and_admin__strict_csp__no_violations(page, db):  # noqa: F811
    User.objects.create_superuser("root", password="root-password-long-enough")
    page.context.add_init_script(COLLECT)
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "root-password-long-enough")
    page.click("input[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    paths = [
        "/login/",
        "/admin/",
        "/admin/rollout/auditentry/",
        "/admin/rollout/rollout/",
        "/admin/auth/user/",
    ]
    assert visit(page, paths) == []
