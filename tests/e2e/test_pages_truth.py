"""Pages outside the console say what is true (issue 16): a refused change answers the sentence
the server logs and where to go, and the API tokens page gives its times with their zone.
Screenshots: docs/screenshots/forbidden-viewer.png, tokens-times.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from rollout import services
from rollout.models import ApiToken

from .conftest import login, screenshot

pytestmark = pytest.mark.e2e
SYSTEM = services.Actor("e2e", via="system")


def test_refused_change__viewer__page_says_only_operators_and_where_to_go(
    page: Page, console: str, carol
):
    login(page, carol)
    page.goto("/rollouts/prompts_v2/")
    # what a form posted by a viewer (an old tab, a link from a chat) gets: a plain form post
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    page.evaluate(
        """([token]) => {
            const f = document.createElement('form');
            f.method = 'post';
            f.action = '/rollouts/prompts_v2/rollback/';
            for (const [k, v] of [['csrfmiddlewaretoken', token], ['reason', 'x']]) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f);
            f.submit();
        }""",
        [token],
    )
    expect(page.locator("#forbidden-reason")).to_have_text("Only operators can change rollouts.")
    expect(page.locator("#forbidden-role")).to_contain_text("carol, a viewer")
    expect(page.get_by_role("link", name="the rollouts")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("403 Forbidden")
    screenshot(page, "forbidden-viewer")


def test_tokens_page__times_carry_their_zone(page: Page, console: str, alice):
    services.create_api_token(name="bot", scopes=["config:read"], actor=SYSTEM)
    token = ApiToken.objects.get(name="bot")
    login(page, alice)
    page.goto("/tokens/")
    created = page.locator(f"#token-{token.pk} td").nth(3)
    expect(created).to_contain_text(f"{token.created_at:%Y-%m-%d %H:%M} UTC")
    screenshot(page, "tokens-times")
