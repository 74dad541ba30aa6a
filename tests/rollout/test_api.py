"""The rollout part of the bot contract, section 2, as the bot and chat-ops call it."""

from __future__ import annotations

import pytest

from rollout.models import AuditEntry, ChannelOverride, Rollout
from selcontrol_client.assignment import bucket
from tests.conftest import SYSTEM, ApiClient

pytestmark = pytest.mark.django_db

DECIDE = "/api/v1/rollouts/prompts_v2/decide"
STATE = "/api/v1/rollouts/prompts_v2"
CHANNEL = "123456789012345678"


def enable(rollout: Rollout, percentage: int, **extra) -> Rollout:
    from rollout import services

    return services.update_rollout(
        rollout, actor=SYSTEM, reason="test", enabled=True, percentage=percentage, **extra
    )


def channel_in_bucket(lo: int, hi: int) -> str:
    n = 10**17
    while True:
        n += 1
        if lo <= bucket(str(n)) < hi:
            return str(n)


def test_decide__no_token__401_with_sentence(db):
    response = ApiClient(None).get(DECIDE, channel_id=CHANNEL)
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_decide__unknown_token__401(db):
    response = ApiClient("sc_not-a-real-token").get(DECIDE, channel_id=CHANNEL)
    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["error"]


def test_decide__revoked_token__401(make_token):
    from rollout import services
    from rollout.models import ApiToken

    raw = make_token("config:read", name="old")
    services.revoke_api_token(ApiToken.objects.get(name="old"), actor=SYSTEM)
    assert ApiClient(raw).get(DECIDE, channel_id=CHANNEL).status_code == 401


def test_decide__wrong_scope__403_naming_scope(make_token):
    response = ApiClient(make_token("events:write")).get(DECIDE, channel_id=CHANNEL)
    assert response.status_code == 403
    assert "config:read" in response.json()["error"]


def test_decide__kill_switch_on_by_default__v1(reader):
    body = reader.get(DECIDE, channel_id=CHANNEL).json()
    assert body == {
        "rollout": "prompts_v2",
        "channel_id": CHANNEL,
        "variant": "v1",
        "reason": "kill_switch",
        "revision": body["revision"],
    }


def test_decide__percentage_rule__matches_bucket(reader, rollout):
    enable(rollout, 20)
    inside, outside = channel_in_bucket(0, 20), channel_in_bucket(20, 100)
    assert reader.get(DECIDE, channel_id=inside).json()["variant"] == "v2_full"
    assert reader.get(DECIDE, channel_id=inside).json()["reason"] == "percentage"
    out = reader.get(DECIDE, channel_id=outside).json()
    assert (out["variant"], out["reason"]) == ("v1", "not_in_rollout")


def test_decide__override__wins_over_percentage(reader, operator_api, rollout):
    enable(rollout, 0)
    put = operator_api.put(
        f"{STATE}/overrides/{CHANNEL}", {"variant": "v2_simplified", "reason": "test channel"}
    )
    assert put.status_code == 201, put.content
    body = reader.get(DECIDE, channel_id=CHANNEL).json()
    assert (body["variant"], body["reason"]) == ("v2_simplified", "override")


def test_decide__kill_switch__beats_override(reader, operator_api, rollout):
    enable(rollout, 100)
    operator_api.put(f"{STATE}/overrides/{CHANNEL}", {"variant": "v2_full", "reason": "x"})
    assert operator_api.post(f"{STATE}/rollback", {"reason": "bad replies"}).status_code == 200
    body = reader.get(DECIDE, channel_id=CHANNEL).json()
    assert (body["variant"], body["reason"]) == ("v1", "kill_switch")


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({}, "channel_id is required"),
        ({"channel_id": ""}, "channel_id"),
        ({"channel_id": "x" * 65}, "channel_id"),
        ({"channel_id": "12 34"}, "channel_id"),
    ],
)
def test_decide__bad_channel_id__400_naming_field(reader, params, fragment):
    response = reader.get(DECIDE, **params)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_decide__unknown_rollout__404(reader):
    response = reader.get("/api/v1/rollouts/nope/decide", channel_id=CHANNEL)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_config__etag__304_until_a_change(reader, rollout):
    first = reader.get("/api/v1/config")
    assert first.status_code == 200
    etag = first["ETag"]
    document = first.json()
    assert [r["key"] for r in document["rollouts"]] == ["prompts_v2"]
    assert reader.get("/api/v1/config", headers={"If-None-Match": etag}).status_code == 304
    enable(rollout, 5)
    changed = reader.get("/api/v1/config", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    entry = changed.json()["rollouts"][0]
    assert (entry["enabled"], entry["percentage"]) == (True, 5)


def test_config__expired_override__left_out(reader, rollout):
    from datetime import timedelta

    from django.utils import timezone

    ChannelOverride.objects.create(
        rollout=rollout,
        channel_id="1",
        variant="v2_full",
        reason="r",
        created_by="x",
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    ChannelOverride.objects.create(
        rollout=rollout, channel_id="2", variant="v2_full", reason="r", created_by="x"
    )
    overrides = reader.get("/api/v1/config").json()["rollouts"][0]["overrides"]
    assert overrides == {"2": {"variant": "v2_full", "expires_at": None}}


def test_state__has_the_contract_fields_and_the_four_phases(reader):
    body = reader.get(STATE).json()
    for key in ("enabled", "percentage", "simplified_percentage", "strategy", "phase", "revision"):
        assert key in body
    assert [p["name"] for p in body["phases"]] == ["Alpha", "Beta", "Canary", "Full"]
    assert [p["percentage"] for p in body["phases"]] == [5, 20, 50, 100]


def test_patch__changes_state_and_audits_with_token_name(operator_api):
    revision = operator_api.get(STATE).json()["revision"]
    response = operator_api.patch(
        STATE,
        {"enabled": True, "percentage": 5, "reason": "alpha"},
        headers={"If-Match": f'"{revision}"'},
    )
    assert response.status_code == 200, response.content
    assert (response.json()["enabled"], response.json()["percentage"]) == (True, 5)
    entry = AuditEntry.objects.filter(rollout__key="prompts_v2").first()
    assert entry.actor == "token:chatops"
    assert entry.via == "api"
    assert entry.reason == "alpha"
    assert entry.before["percentage"] == 0 and entry.after["percentage"] == 5


def test_patch__stale_if_match__409_with_current_state(operator_api):
    revision = operator_api.get(STATE).json()["revision"]
    ok = operator_api.patch(
        STATE, {"percentage": 5, "reason": "first"}, headers={"If-Match": f'"{revision}"'}
    )
    assert ok.status_code == 200
    stale = operator_api.patch(
        STATE, {"percentage": 50, "reason": "second"}, headers={"If-Match": f'"{revision}"'}
    )
    assert stale.status_code == 409
    assert stale.json()["current"]["percentage"] == 5
    assert "changed since you loaded it" in stale.json()["error"]
    assert Rollout.objects.get(key="prompts_v2").percentage == 5


def test_patch__no_change__no_new_revision_or_audit(operator_api):
    operator_api.patch(STATE, {"percentage": 5, "reason": "x"})
    revision = operator_api.get(STATE).json()["revision"]
    count = AuditEntry.objects.count()
    again = operator_api.patch(STATE, {"percentage": 5, "reason": "x"})
    assert again.json()["revision"] == revision
    assert AuditEntry.objects.count() == count


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"percentage": 101, "reason": "x"}, "percentage"),
        ({"percentage": -1, "reason": "x"}, "percentage"),
        ({"percentage": "50", "reason": "x"}, "percentage"),
        ({"percentage": 5.5, "reason": "x"}, "percentage"),
        ({"enabled": "yes", "reason": "x"}, "enabled"),
        ({"strategy": "random", "reason": "x"}, "strategy"),
        ({"percentage": 5}, "reason is required"),
        ({"percentage": 5, "reason": ""}, "reason"),
        ("{not json", "not valid JSON"),
        ([1, 2], ""),
    ],
)
def test_patch__bad_body__400_and_nothing_changed(operator_api, body, fragment):
    before = operator_api.get(STATE).json()
    response = operator_api.patch(STATE, body)
    assert response.status_code == 400, response.content
    assert fragment in response.json()["error"]
    assert operator_api.get(STATE).json() == before


def test_patch__bad_if_match__400(operator_api):
    response = operator_api.patch(
        STATE, {"percentage": 5, "reason": "x"}, headers={"If-Match": "yesterday"}
    )
    assert response.status_code == 400
    assert "If-Match" in response.json()["error"]


def test_patch__reader_token__403(reader):
    assert reader.patch(STATE, {"percentage": 5, "reason": "x"}).status_code == 403


def test_rollback__engages_kill_switch_and_audits(operator_api, rollout):
    enable(rollout, 50)
    response = operator_api.post(f"{STATE}/rollback", {"reason": "hallucinations up"})
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["kill_switch"] is True
    entry = AuditEntry.objects.filter(action="kill_switch.engage").get()
    assert entry.reason == "hallucinations up" and entry.actor == "token:chatops"


def test_rollback__without_reason__400(operator_api):
    response = operator_api.post(f"{STATE}/rollback", {})
    assert response.status_code == 400
    assert "reason" in response.json()["error"]


def test_override__put_replace_delete(operator_api, reader):
    url = f"{STATE}/overrides/{CHANNEL}"
    assert operator_api.put(url, {"variant": "v2_full", "reason": "a"}).status_code == 201
    replaced = operator_api.put(
        url, {"variant": "v1", "reason": "b", "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert replaced.status_code == 200
    assert replaced.json()["variant"] == "v1"
    listed = reader.get(f"{STATE}/overrides").json()
    assert [(o["channel_id"], o["variant"]) for o in listed] == [(CHANNEL, "v1")]
    assert operator_api.delete(url).status_code == 204
    assert operator_api.delete(url).status_code == 404
    assert [e.action for e in AuditEntry.objects.order_by("id")][-3:] == [
        "override.set",
        "override.set",
        "override.remove",
    ]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"variant": "v3", "reason": "x"}, "variant must be one of"),
        ({"variant": "v1", "reason": "x", "expires_at": "2001-01-01T00:00:00Z"}, "past"),
        ({"variant": "v1", "reason": "x", "expires_at": "2099-01-01T00:00:00"}, "time zone"),
        ({"variant": "v1", "reason": "x", "expires_at": "soon"}, "expires_at"),
        ({"variant": "v1"}, "reason is required"),
    ],
)
def test_override__bad_body__4xx_and_nothing_stored(operator_api, body, fragment):
    response = operator_api.put(f"{STATE}/overrides/{CHANNEL}", body)
    assert response.status_code in (400, 422), response.content
    assert fragment in response.json()["error"]
    assert not ChannelOverride.objects.exists()


def test_override__bad_channel_id__400(operator_api):
    response = operator_api.put(
        f"{STATE}/overrides/not%20a%20channel", {"variant": "v1", "reason": "x"}
    )
    assert response.status_code == 400
    assert "channel id" in response.json()["error"]


def test_openapi__documents_every_contract_call(reader):
    document = reader.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    assert "get" in paths["/api/v1/rollouts/{key}/decide"]
    assert "get" in paths["/api/v1/config"]
    assert {"get", "patch"} <= set(paths["/api/v1/rollouts/{key}"])
    assert "post" in paths["/api/v1/rollouts/{key}/rollback"]
    assert {"put", "delete"} <= set(paths["/api/v1/rollouts/{key}/overrides/{channel_id}"])
