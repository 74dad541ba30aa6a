"""Structured logs: one JSON line per request with the request id; the id travels in and out."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from selcontrol.logging import logging_config, redact


def test_access_line__json_format__carries_the_request_facts(json_log, reader):
    response = reader.get("/api/v1/config")
    assert response.status_code == 200
    [line] = json_log.access()
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/config"
    assert line["route"] == "/api/v1/config"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["token"] == "bot"
    assert line["request_id"] == response["X-Request-ID"]
    assert line["ts"].endswith("+00:00")


def test_access_line__signed_in_user__names_the_user(json_log, operator_client):
    assert operator_client.get("/audit/").status_code == 200
    [line] = json_log.access()
    assert line["user"] == "alice"


def test_access_line__query_string__is_not_logged(json_log, client):
    client.get("/healthz?token=sc_secretsecretsecret")
    [line] = json_log.access()
    assert line["path"] == "/healthz"
    assert "secretsecret" not in json_log.text


def test_request_id__well_formed_from_the_balancer__is_kept(json_log, client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-1234.abcd"})
    assert response["X-Request-ID"] == "lb-1234.abcd"
    assert json_log.access()[0]["request_id"] == "lb-1234.abcd"


def test_request_id__malformed__is_replaced(json_log, client):
    response = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_request_id__django_warning_during_the_request__carries_the_same_id(json_log, client):
    response = client.get("/api/v1/config")  # no token: django.request logs "Unauthorized"
    assert response.status_code == 401
    django_lines = [r for r in json_log.records() if r["logger"] == "django.request"]
    assert django_lines, json_log.text
    assert django_lines[0]["request_id"] == response["X-Request-ID"]
    assert django_lines[0]["status"] == 401


def test_log_line__outside_a_request__has_no_request_id(json_log):
    logging.getLogger("selcontrol.test").warning("standalone")
    [record] = [r for r in json_log.records() if r["logger"] == "selcontrol.test"]
    assert record["message"] == "standalone"
    assert "request_id" not in record


def test_plain_format__access_line__is_readable_text_with_the_request_id(plain_log, client):
    response = client.get("/healthz")
    line = [ln for ln in plain_log.text.splitlines() if "selcontrol.request" in ln][0]
    assert "GET /healthz 200" in line
    assert f"[{response['X-Request-ID']}]" in line


def test_server_error__access_line__is_logged_at_error(json_log, reader, monkeypatch):
    import rollout.api

    def broken():
        raise RuntimeError("the config cache is broken")

    monkeypatch.setattr(rollout.api, "get_rules", broken)
    response = reader.get("/api/v1/rollouts/prompts_v2/decide", channel_id="123456789012345678")
    assert response.status_code == 500
    assert json_log.access()[0]["level"] == "ERROR"
    api_errors = [r for r in json_log.records() if r["logger"] == "selcontrol.api"]
    assert "RuntimeError: the config cache is broken" in api_errors[0]["exception"]


def test_log_format__unknown__is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT='yaml'"):
        logging_config("yaml", "INFO")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefgh12345678",
        "token sc_AbCdEfGh12345678_-xyz in a message",
        "password=hunter2hunter2",
        "{'password': 'hunter2hunter2'}",
        '{"password": "hunter2hunter2"}',
        "'HTTP_AUTHORIZATION': 'Basic dXNlcjpodW50ZXIyaHVudGVyMg=='",
    ],
)
def test_redact__secret_shapes__are_removed(text):
    cleaned = redact(text)
    for secret in ("abcdefgh12345678", "AbCdEfGh12345678", "hunter2hunter2", "dXNlcjpodW50"):
        assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_redact__ordinary_text__is_unchanged():
    text = "Saved: 20% to v2 (channel 123456789012345678, revision 42)."
    assert redact(text) == text
