"""Issue 15, item 6 and its "weaker points": each input an attacker sent, sent again exactly.

Every answer is a 4xx with a sentence (JSON on the API), never a 500, and nothing is stored.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.db import connection

from rollout import services
from rollout.models import ApiToken, AuditEntry, ChannelOverride, Phase, Rollout
from selcontrol.input_guard import NUL_IN_ADDRESS, ChunkedBodyMiddleware
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db

KEY = "prompts_v2"
NUL_KEY = "/api/v1/rollouts/prompts_v2%00"


def _state(operator_api) -> dict:
    return operator_api.get(f"/api/v1/rollouts/{KEY}").json()


def _audit_count() -> int:
    return AuditEntry.objects.count()


# --- NUL in the path key and query strings ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", NUL_KEY, None),
        ("get", f"{NUL_KEY}/summary", None),
        ("get", f"{NUL_KEY}/overrides", None),
        ("get", f"{NUL_KEY}/decide?channel_id=1", None),
        ("patch", NUL_KEY, {"percentage": 5, "reason": "x"}),
        ("post", f"{NUL_KEY}/rollback", {"reason": "x"}),
        ("put", f"{NUL_KEY}/overrides/123", {"variant": "v1", "reason": "x"}),
        ("delete", f"{NUL_KEY}/overrides/123", None),
        ("delete", f"/api/v1/rollouts/{KEY}/overrides/123?reason=x%00", None),
        ("get", f"/api/v1/rollouts/{KEY}/summary?since=x%00", None),
    ],
)
def test_api__nul_in_path_or_query__400_json_sentence_nothing_stored(
    operator_api, method, path, body
):
    before = _audit_count()
    if method in ("get", "delete"):
        answer = getattr(operator_api.client, method)(path, headers=operator_api._headers(None))
    else:
        answer = getattr(operator_api, method)(path, body)
    assert answer.status_code == 400
    assert answer.json() == {"error": NUL_IN_ADDRESS}
    assert _audit_count() == before and not ChannelOverride.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        f"/rollouts/{KEY}/sections/overrides/?q=x%00",
        "/console/alerts/?part=banner&rollout=x%00",
        "/metrics/projection?rollout=x%00",
        f"/rollouts/{KEY}/lookup/?channel_id=1%00",
        "/audit/?actor=x%00",
        f"/metrics/{KEY}/?range=custom&start=2026-01-01%00&end=2026-01-02",
    ],
)
def test_console__nul_in_query__400_sentence(operator_client, path):
    answer = operator_client.get(path)
    assert answer.status_code == 400
    assert answer.content.decode() == NUL_IN_ADDRESS


# --- NUL and lone surrogates in JSON strings -----------------------------------------------------


@pytest.mark.parametrize("bad", ["a\u0000b", "a\ud800b"], ids=["NUL", "lone surrogate"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", f"/api/v1/rollouts/{KEY}", {"percentage": 5}),
        ("post", f"/api/v1/rollouts/{KEY}/rollback", {}),
        ("put", f"/api/v1/rollouts/{KEY}/overrides/123", {"variant": "v1"}),
    ],
    ids=["PATCH reason", "rollback reason", "override reason"],
)
def test_api__nul_or_surrogate_in_reason__400_naming_the_field_nothing_stored(
    operator_api, method, path, body, bad
):
    state = _state(operator_api)
    answer = getattr(operator_api, method)(path, {**body, "reason": bad})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("reason holds a ")
    assert _state(operator_api) == state
    assert not ChannelOverride.objects.exists()


# --- bodies over Django's 2.5 MB -----------------------------------------------------------------


def test_patch__3_mb_reason__413_sentence_nothing_stored(operator_api):
    state = _state(operator_api)
    answer = operator_api.patch(
        f"/api/v1/rollouts/{KEY}", {"percentage": 5, "reason": "x" * 3_000_000}
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "The request body is larger than 2.5 MiB; send less."}
    assert _state(operator_api) == state


def test_instances_report__10_mb_body__413_sentence(reader):
    answer = reader.post("/api/v1/instances/report", {"host": "x" * 10_000_000})
    assert answer.status_code == 413
    assert "larger than 2.5 MiB" in answer.json()["error"]


# --- date edges ----------------------------------------------------------------------------------


EDGE_RANGE = {"range": "custom", "start": "9999-12-30", "end": "9999-12-31"}


@pytest.mark.parametrize(
    "path",
    [
        f"/metrics/{KEY}/charts/responses.csv",
        f"/metrics/{KEY}/charts/responses.json",
        f"/metrics/{KEY}/comparison.csv",
        f"/metrics/{KEY}/comparison.json",
    ],
)
def test_dashboard_exports__custom_range_at_year_9999__400_sentence(viewer_client, path):
    answer = viewer_client.get(path, EDGE_RANGE)
    assert answer.status_code == 400
    assert "is outside the dates selcontrol can have data for" in answer.json()["error"]


def test_dashboard__custom_range_at_year_9999__page_says_why(viewer_client):
    answer = viewer_client.get(f"/metrics/{KEY}/", EDGE_RANGE)
    assert answer.status_code == 422
    assert "start &#x27;9999-12-30&#x27; is outside the dates" in answer.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        {"since": "9999-12-31T23:59:59-14:00"},
        {"until": "0001-01-01T00:00:00+14:00"},
        {"since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_summary__since_until_at_the_calendar_edge__400_sentence(reader, query):
    answer = reader.get(f"/api/v1/rollouts/{KEY}/summary", **query)
    assert answer.status_code == 400
    assert "is outside the times selcontrol can keep" in answer.json()["error"]


@pytest.mark.parametrize("since", ["2025-W23-1T12:00:00Z", "20250601T120000Z"])
def test_summary__iso_forms_that_are_not_rfc_3339__400_sentence(reader, since):
    answer = reader.get(f"/api/v1/rollouts/{KEY}/summary", since=since)
    assert answer.status_code == 400
    assert "is not an RFC 3339 timestamp" in answer.json()["error"]


def test_summary__rfc_3339_lower_case_t_and_z__accepted(reader):
    answer = reader.get(
        f"/api/v1/rollouts/{KEY}/summary",
        since="2026-03-01t00:00:00z",
        until="2026-03-02t00:00:00z",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["since"].startswith("2026-03-01T00:00:00")


def test_put_override__iso_week_expiry__400_and_lower_case_accepted(operator_api):
    week = operator_api.put(
        f"/api/v1/rollouts/{KEY}/overrides/123456789012345678",
        {"variant": "v1", "reason": "x", "expires_at": "2099-W23-1T12:00:00Z"},
    )
    assert week.status_code == 400 and "not an RFC 3339 timestamp" in week.json()["error"]
    lower = operator_api.put(
        f"/api/v1/rollouts/{KEY}/overrides/123456789012345678",
        {"variant": "v1", "reason": "x", "expires_at": "2099-06-01t12:00:00z"},
    )
    assert lower.status_code == 201, lower.content
    assert lower.json()["expires_at"].startswith("2099-06-01T12:00:00")


# --- API 404 and 405 -----------------------------------------------------------------------------


def test_api__unknown_path__404_json_sentence(reader):
    answer = reader.get("/api/v1/no-such-thing")
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/json"
    assert answer.json() == {
        "error": "There is no API operation at /api/v1/no-such-thing; "
        "the operations are listed at /api/v1/docs."
    }


def test_api__wrong_method__405_json_sentence_with_allow(reader):
    answer = reader.post("/api/v1/config", {})
    assert answer.status_code == 405
    assert answer.json() == {"error": "POST is not allowed here; use GET."}
    assert answer["Allow"] == "GET"


# --- releasing the kill switch is deliberate -----------------------------------------------------


def test_patch__enable_without_if_match_after_rollback__428_and_rollback_kept(operator_api):
    revision = _state(operator_api)["revision"]
    operator_api.patch(
        f"/api/v1/rollouts/{KEY}",
        {"enabled": True, "percentage": 20, "reason": "beta"},
        headers={"If-Match": f'"{revision}"'},
    )
    rolled_back = operator_api.post(f"/api/v1/rollouts/{KEY}/rollback", {"reason": "incident"})
    assert rolled_back.json()["enabled"] is False

    answer = operator_api.patch(
        f"/api/v1/rollouts/{KEY}", {"enabled": True, "reason": "last writer wins"}
    )
    assert answer.status_code == 428
    assert answer.json()["error"] == (
        f"{KEY} has its kill switch on; turning it back on needs the header "
        f'If-Match: "{rolled_back.json()["revision"]}" (the revision you saw, from GET '
        f"/api/v1/rollouts/{KEY}), so that it cannot undo a rollback you have not seen."
    )
    assert _state(operator_api)["enabled"] is False
    config = operator_api.get("/api/v1/config").json()
    assert config["rollouts"][0]["enabled"] is False

    wildcard = operator_api.patch(
        f"/api/v1/rollouts/{KEY}", {"enabled": True, "reason": "x"}, headers={"If-Match": "*"}
    )
    assert wildcard.status_code == 428

    deliberate = operator_api.patch(
        f"/api/v1/rollouts/{KEY}",
        {"enabled": True, "reason": "fixed"},
        headers={"If-Match": f'"{rolled_back.json()["revision"]}"'},
    )
    assert deliberate.status_code == 200 and deliberate.json()["enabled"] is True


def test_patch__other_fields_without_if_match_after_rollback__still_allowed(operator_api):
    operator_api.post(f"/api/v1/rollouts/{KEY}/rollback", {"reason": "incident"})
    answer = operator_api.patch(f"/api/v1/rollouts/{KEY}", {"percentage": 5, "reason": "lower"})
    assert answer.status_code == 200
    assert (answer.json()["enabled"], answer.json()["percentage"]) == (False, 5)


def test_console_reenable__after_rollback__still_works(operator_client, rollout):
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="incident")
    rollout.refresh_from_db()
    answer = operator_client.post(
        f"/rollouts/{KEY}/reenable/",
        {"percentage": 5, "reason": "fixed", "revision": rollout.revision},
    )
    assert answer.status_code == 302
    rollout.refresh_from_db()
    assert (rollout.enabled, rollout.percentage) == (True, 5)


# --- tokens --------------------------------------------------------------------------------------


def test_create_token__page_showing_it__not_stored_by_any_cache(operator_client):
    answer = operator_client.post("/tokens/new/", {"name": "sel-bot", "scopes": ["config:read"]})
    assert answer.status_code == 200
    assert ApiToken.objects.filter(name="sel-bot").exists()
    assert "no-store" in answer["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_create_token__eight_at_once_with_one_name__one_created_the_rest_a_sentence():
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create() -> None:
        try:
            barrier.wait()
            services.create_api_token(name="sel-bot", scopes=["config:read"], actor=SYSTEM)
            outcomes.append("created")
        except services.InvalidChange as exc:
            outcomes.append(str(exc))
        except Exception as exc:  # noqa: BLE001  (what the test is about)
            outcomes.append(f"crash: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [
        "A token named 'sel-bot' exists already; pick another name."
    ] * 7 + ["created"]
    assert ApiToken.objects.filter(name="sel-bot").count() == 1


# --- the admin's phase plan ----------------------------------------------------------------------


def test_admin__superuser_changes_a_phase_percentage__audited_through_the_service(client, rollout):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", password="x-long-enough-password")
    client.force_login(admin)
    phase = Phase.objects.get(rollout=rollout, name="Alpha")
    revision = rollout.revision
    answer = client.post(
        f"/admin/rollout/phase/{phase.pk}/change/",
        {
            "rollout": rollout.pk,
            "order": phase.order,
            "name": phase.name,
            "percentage": 7,
            "min_watch": "1 00:00:00",
            "max_watch": "",
            "goal": phase.goal,
            "success_criteria": phase.success_criteria,
            "rollback_trigger": phase.rollback_trigger,
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    phase.refresh_from_db()
    assert phase.percentage == 7
    entry = AuditEntry.objects.get(action=AuditEntry.Action.PHASE_EDIT)
    assert (entry.actor, entry.via, entry.rollout_id) == ("root", "admin", rollout.pk)
    assert (entry.before["percentage"], entry.after["percentage"]) == (5, 7)
    assert Rollout.objects.get(pk=rollout.pk).revision > revision


# --- chunked bodies ------------------------------------------------------------------------------


def test_chunked_body__without_content_length__read_whole_by_django():
    body = json.dumps({"events": []}).encode()
    seen: list[bytes] = []

    def app(environ, start_response):
        seen.append(WSGIRequest(environ).body)
        start_response("200 OK", [])
        return [b""]

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/events",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),  # the server decoded the chunks
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
    }
    ChunkedBodyMiddleware(app)(environ, lambda *a: None)
    assert seen == [body]


def test_chunked_body__past_the_limit__given_a_length_the_views_refuse():
    environ = {
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(b"x" * 101),
        "wsgi.input_terminated": True,
    }
    ChunkedBodyMiddleware(lambda e, s: [b""], limit=50)(environ, None)
    assert environ["CONTENT_LENGTH"] == "51"
