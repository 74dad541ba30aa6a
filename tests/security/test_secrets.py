"""API tokens, Authorization headers and passwords never reach the logs or an error page."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.conftest import PASSWORD, ApiClient

SECRET_PASSWORD = "Tr0ub4dor&3-not-in-logs"


def assert_absent(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text
        assert secret[3:20] not in text  # not even a recognisable part of it


def test_api_call__valid_token__logs_its_name_never_the_token(json_log, make_token):
    raw = make_token("config:read", name="sel-bot")
    assert ApiClient(raw).get("/api/v1/config").status_code == 200
    assert json_log.access()[0]["token"] == "sel-bot"
    assert_absent(raw, json_log.text)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw", ["sc_madeUpButLooksReal1234567890abcdef", "just-some-bearer-value-123"]
)
def test_api_call__unknown_token__never_logged(json_log, raw):
    response = ApiClient(raw).get("/api/v1/config")
    assert response.status_code == 401
    assert_absent(raw, json_log.text, response.content.decode())


def test_api_call__token_lacking_scope__error_names_the_token_not_its_secret(json_log, make_token):
    raw = make_token("events:write", name="events-only")
    response = ApiClient(raw).get("/api/v1/config")
    assert response.status_code == 403
    assert "events-only" in response.json()["error"]
    assert_absent(raw, json_log.text, response.content.decode())


def test_api_server_error__token_in_the_exception__redacted_in_logs_and_body(
    json_log, make_token, monkeypatch
):
    import rollout.api

    raw = make_token("config:read")

    def broken():
        raise RuntimeError(f"lookup failed for Authorization: Bearer {raw}")

    monkeypatch.setattr(rollout.api, "get_rules", broken)
    response = ApiClient(raw).get(
        "/api/v1/rollouts/prompts_v2/decide", channel_id="123456789012345678"
    )
    assert response.status_code == 500
    assert response.json() == {
        "error": "selcontrol failed to handle this request; it has been logged."
    }
    assert "RuntimeError: lookup failed" in json_log.text  # the failure is logged...
    assert_absent(raw, json_log.text)  # ...without the token


@pytest.mark.django_db
def test_sign_in__wrong_password__not_logged(json_log, alice):
    response = Client().post("/login/", {"username": "alice", "password": SECRET_PASSWORD})
    assert response.status_code == 200
    assert_absent(SECRET_PASSWORD, json_log.text)


@pytest.mark.django_db
def test_sign_in__right_password__not_logged(json_log, alice):
    response = Client().post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert PASSWORD not in json_log.text
    assert json_log.access()[0]["user"] == "alice"


def test_console_token_created__shown_once_on_the_page_never_logged(json_log, operator_client):
    response = operator_client.post("/tokens/new/", {"name": "new-bot", "scopes": ["config:read"]})
    assert response.status_code == 200
    from rollout.models import ApiToken

    token = ApiToken.objects.get(name="new-bot")
    raw = re.search(r'id="raw-token"[^>]*value="([^"]+)"', response.content.decode())[1]
    assert ApiToken.hash(raw) == token.token_hash
    assert_absent(raw, json_log.text)


@pytest.mark.django_db
@pytest.mark.urls("tests.security.urls_errors")
def test_console_server_error__error_page_and_log__carry_no_secrets(json_log, settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    response = client.post(
        "/test-failure/",
        {"password": SECRET_PASSWORD},
        headers={"Authorization": "Bearer sc_headerTokenValue0123456789"},
    )
    assert response.status_code == 500
    page = response.content.decode()
    errors = [r for r in json_log.records() if r["logger"] == "django.request"]
    assert errors and "RuntimeError: cannot handle" in errors[0]["exception"]
    assert_absent(SECRET_PASSWORD, page, json_log.text)
    assert_absent("sc_headerTokenValue0123456789", page, json_log.text)


@pytest.mark.django_db
@pytest.mark.urls("tests.security.urls_errors")
def test_debug_error_page__authorization_header__masked(settings):
    """Even the DEBUG page (never on in production) hides the Authorization header."""
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    response = client.get(
        "/test-failure/", headers={"Authorization": "Basic bWFza2VkOnNlY3JldHZhbHVl"}
    )
    assert response.status_code == 500
    page = response.content.decode()
    assert "HTTP_AUTHORIZATION" in page
    assert "bWFza2VkOnNlY3JldHZhbHVl" not in page.split("Request information")[-1]
