"""What the console and the API say is true and current (issue 16): the off-plan state and its
watch clock, Discord snowflakes for prompts_v2 overrides, expiry in the operator's time zone,
expired overrides not counted, "Last 24 h" as history with the projection labelled, holds filed
as holds, phases' start and end times, the fleet panel's polling, the favicon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from metrics.ingest.intake import record_events
from rollout import services
from rollout.models import AuditEntry, ChannelOverride, Rollout
from tests.conftest import SYSTEM

HX = {"HX-Request": "true"}
KEY = "prompts_v2"
SNOWFLAKE = "123456789012345678"


def url(name: str, *args) -> str:
    return reverse(f"rollout:{name}", args=args)


def fresh() -> Rollout:
    return Rollout.objects.select_related("current_phase").get(key=KEY)


@pytest.fixture
def full(rollout) -> Rollout:
    """In Full (100%) since 3 days."""
    when = timezone.now() - timedelta(days=3)
    with time_machine.travel(when, tick=False):
        return services.move_to_phase(
            rollout, phase=4, actor=SYSTEM, reason="full", gate_override_reason="t", now=when
        )


# --- off plan --------------------------------------------------------------------------------


def test_reenable_at_20_in_full__status_says_off_plan_and_the_watch_stops(full, operator_client):
    services.engage_kill_switch(full, actor=SYSTEM, reason="crash")
    services.release_kill_switch(full, actor=SYSTEM, reason="fixed", percentage=20)
    html = operator_client.get(url("detail", KEY)).content.decode()
    assert "off plan: Full is 100%, serving 20%" in html
    assert "stopped" in html and "counts only at 100%" in html
    assert "serving 20%" in operator_client.get(url("section", KEY, "timeline")).content.decode()


def test_slider_moved_inside_a_phase__off_plan_gates_the_advance(rollout):
    canary = services.move_to_phase(
        rollout, phase=3, actor=SYSTEM, reason="c", gate_override_reason="t"
    )
    canary = services.update_rollout(canary, actor=SYSTEM, reason="slow down", percentage=30)
    assert canary.off_plan() == "off plan: Canary is 50%, serving 30%"
    problems = services.phase_gate_problems(canary, canary.next_phase())
    assert any("off plan: Canary is 50%, serving 30%" in p for p in problems)


def test_back_on_plan__watch_restarts_from_then(rollout):
    canary = services.move_to_phase(
        rollout,
        phase=3,
        actor=SYSTEM,
        reason="c",
        gate_override_reason="t",
        now=timezone.now() - timedelta(days=6),
    )
    services.update_rollout(canary, actor=SYSTEM, reason="slow down", percentage=30)
    before = timezone.now()
    back = services.update_rollout(fresh(), actor=SYSTEM, reason="as planned", percentage=50)
    assert back.on_plan() and back.phase_started_at >= before
    assert back.phase_watch_ends_at() > timezone.now() + timedelta(days=6)


def test_api_state__off_plan__named_and_no_watch_end(full, operator_api):
    services.engage_kill_switch(full, actor=SYSTEM, reason="crash")
    services.release_kill_switch(full, actor=SYSTEM, reason="fixed", percentage=20)
    body = operator_api.get(f"/api/v1/rollouts/{KEY}").json()
    assert body["off_plan"] == "off plan: Full is 100%, serving 20%"
    assert body["phase"]["min_watch_ends_at"] is None


# --- Discord snowflakes ----------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["general", "12345", "1234567890123456789012"])
def test_override__not_a_snowflake__422_sentence_nothing_stored(operator_client, rollout, channel):
    response = operator_client.post(
        url("add_override", KEY),
        {"channel_id": channel, "variant": "v1", "reason": "r", "revision": rollout.revision},
        headers=HX,
    )
    body = response.content.decode()
    assert response.status_code == 422
    assert "Discord snowflakes: 17 to 20 digits" in body and "Copy Channel ID" in body
    assert not ChannelOverride.objects.exists()


def test_api_override__channel_name__422_sentence(operator_api, rollout):
    response = operator_api.put(
        f"/api/v1/rollouts/{KEY}/overrides/general", {"variant": "v1", "reason": "x"}
    )
    assert response.status_code == 422
    assert "Discord snowflakes: 17 to 20 digits" in response.json()["error"]
    assert not ChannelOverride.objects.exists()


def test_override__stored_name__can_still_be_removed(operator_client, rollout):
    ChannelOverride.objects.create(
        rollout=rollout, channel_id="general", variant="v1", reason="old", created_by="x"
    )
    response = operator_client.post(
        url("remove_override", KEY, "general"),
        {"revision": fresh().revision, "reason": "was a name"},
        headers=HX,
    )
    assert response.status_code == 200 and not ChannelOverride.objects.exists()


# --- expiry in the operator's time zone ------------------------------------------------------


def _add(client, **data):
    body = {"channel_id": SNOWFLAKE, "variant": "v1", "reason": "r", "revision": fresh().revision}
    return client.post(url("add_override", KEY), {**body, **data}, headers=HX)


def test_override_expiry__new_york_operator__three_minutes_from_now_kept(operator_client, rollout):
    now = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)  # 11:00 in New York (EDT, UTC-4)
    with time_machine.travel(now, tick=False):
        response = _add(operator_client, expires_at="2026-07-01T11:03", tz="America/New_York")
    assert response.status_code == 200
    assert ChannelOverride.objects.get().expires_at == now + timedelta(minutes=3)


def test_override_expiry__in_the_past__sentence_with_local_now_no_field_name(
    operator_client, rollout
):
    now = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST, UTC-5)
    with time_machine.travel(now, tick=False):
        response = _add(operator_client, expires_at="2026-01-10T09:58", tz="America/New_York")
    body = response.content.decode()
    assert response.status_code == 422
    assert "is in the past: it is now 2026-01-10 10:00 in your time zone" in body
    assert "America/New_York, UTC-05:00" in body
    assert "expires_at" not in body.split('name="expires_at"')[0]  # only the input's name
    assert "<strong>Expires</strong>" in body
    assert not ChannelOverride.objects.exists()


def test_override_expiry__unknown_zone__read_as_utc(operator_client, rollout):
    response = _add(operator_client, expires_at="2099-01-02T03:04", tz="Mars/Olympus")
    assert response.status_code == 200
    assert ChannelOverride.objects.get().expires_at.isoformat() == "2099-01-02T03:04:00+00:00"


# --- expired overrides are not counted --------------------------------------------------------


def test_expired_override__not_counted_on_the_page_nor_in_the_api(
    operator_client, operator_api, rollout
):
    for i, minutes in enumerate((-5, 60, None, None)):
        ChannelOverride.objects.create(
            rollout=rollout,
            channel_id=f"10000000000000000{i}",
            variant="v1",
            reason="r",
            created_by="x",
            expires_at=timezone.now() + timedelta(minutes=minutes) if minutes else None,
        )
    html = operator_client.get(url("section", KEY, "status")).content.decode()
    tile = html.split('<div class="k">Overrides</div>')[1]
    assert '<div class="v">3</div>' in tile.split("</div>", 2)[0] + "</div>"
    assert operator_api.get(f"/api/v1/rollouts/{KEY}").json()["overrides"] == 3
    config = operator_api.get("/api/v1/config").json()["rollouts"][0]["overrides"]
    assert len(config) == 3


# --- Last 24 h: history, the projection labelled -------------------------------------------------


def _reply(i: int, variant: str, ts: datetime) -> dict:
    return {
        "id": f"h{i}",
        "type": "response",
        "ts": ts.isoformat(),
        "channel_id": str(10**17 + i),
        "message_id": f"m{i}",
        "rollout": KEY,
        "variant": variant,
        "model": "m",
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": 100,
        "error": None,
    }


def test_last_24h__just_moved_to_full__history_shows_v1_traffic_projection_labelled(
    rollout, operator_client
):
    services.move_to_phase(rollout, phase=2, actor=SYSTEM, reason="b", gate_override_reason="t")
    now = timezone.now()
    events = [_reply(i, "v1" if i % 5 else "v2_full", now - timedelta(hours=2)) for i in range(50)]
    assert not record_events(events).rejected
    services.move_to_phase(fresh(), phase=4, actor=SYSTEM, reason="f", gate_override_reason="t")
    html = operator_client.get(url("section", KEY, "status")).content.decode()
    served = html.split('id="served-table"')[1].split("</table>")[0]
    assert '<tr data-variant="v1">' in served and "40 · 80%" in served
    assert '<tr data-variant="v2_full">' in served and "10 · 20%" in served
    assert "Last 24 h: what the bot served" in html
    assert "Projection: the current rule applied to the same 50 channels" in html
    assert "Not history" in html


# --- audit kinds, phases, fleet, favicon ------------------------------------------------------


def test_hold__filed_as_a_hold_not_a_phase_change(operator_client, rollout):
    services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="a")
    operator_client.post(
        url("hold", KEY), {"revision": fresh().revision, "reason": "more data"}, headers=HX
    )
    entry = AuditEntry.objects.latest("id")
    assert entry.action == "phase.hold" and entry.get_action_display() == "Held at a phase"
    html = operator_client.get(url("audit"), {"action": "phase.change"}).content.decode()
    assert "more data" not in html


def test_api_phases__alpha_that_ran__has_started_and_ended(rollout, operator_api):
    alpha = timezone.now() - timedelta(days=3)
    services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="a", now=alpha)
    services.hold_phase(fresh(), actor=SYSTEM, reason="wait")
    services.move_to_phase(fresh(), phase=2, actor=SYSTEM, reason="b", gate_override_reason="t")
    phases = operator_api.get(f"/api/v1/rollouts/{KEY}").json()["phases"]
    assert phases[0]["name"] == "Alpha"
    assert datetime.fromisoformat(phases[0]["started_at"].replace("Z", "+00:00")) == alpha
    assert phases[0]["ended_at"] is not None
    assert phases[1]["started_at"] is not None and phases[1]["ended_at"] is None
    assert phases[2]["started_at"] is None


def test_fleet_panel__change_with_no_bot__polls_slowly(operator_client, rollout):
    services.update_rollout(rollout, actor=SYSTEM, reason="x", percentage=5)
    html = operator_client.get(url("fleet", KEY)).content.decode()
    assert "no live instance" in html
    assert 'hx-trigger="every 15s' in html and "every 1s" not in html


def test_favicon__redirects_to_the_static_icon(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith(".svg")


def test_last_24h__replies_arrive_after_a_page_load__shown_at_once_not_a_cached_none(
    rollout, operator_client
):
    services.move_to_phase(rollout, phase=2, actor=SYSTEM, reason="b", gate_override_reason="t")
    first = operator_client.get(url("section", KEY, "status")).content.decode()
    assert "No traffic seen yet" in first
    now = timezone.now()
    assert not record_events(
        [_reply(i, "v1", now - timedelta(minutes=5)) for i in range(7)]
    ).rejected
    html = operator_client.get(url("section", KEY, "status")).content.decode()
    assert "No traffic seen yet" not in html and "7 · 100%" in html


def test_preview__slider_off_the_phase_plan__says_what_that_means(operator_client, rollout):
    services.move_to_phase(rollout, phase=3, actor=SYSTEM, reason="c", gate_override_reason="t")
    html = operator_client.get(url("preview", KEY), {"percentage": 30}, headers=HX).content.decode()
    assert "Off plan:</strong> Canary is 50%; at 30% its minimum watch stops" in html
    services.update_rollout(fresh(), actor=SYSTEM, reason="slow", percentage=30)
    html = operator_client.get(url("preview", KEY), {"percentage": 50}, headers=HX).content.decode()
    assert "Back on plan: Canary's minimum watch starts again from the save." in html


def test_guardrail_panel__evaluate_now_for_operators_only_with_the_date(
    operator_client, viewer_client, rollout
):
    services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="a")
    assert "Evaluate now" in operator_client.get(url("detail", KEY)).content.decode()
    html = viewer_client.get(url("detail", KEY)).content.decode()
    assert "Evaluate now" not in html and "not evaluated yet" in html
    operator_client.post(f"/metrics/{KEY}/guardrails/evaluate/", headers=HX)
    html = viewer_client.get(url("detail", KEY)).content.decode()
    assert f"evaluated {timezone.now():%b} {timezone.now().day}, " in html


def test_guardrail_panel__new_phase_not_evaluated_yet__says_so_not_inactive(
    operator_client, rollout
):
    services.move_to_phase(rollout, phase=2, actor=SYSTEM, reason="b", gate_override_reason="t")
    html = operator_client.get(url("section", KEY, "status")).content.decode()
    assert "5 watched in Beta, not evaluated since it began" in html  # crash guard included
    assert "not active in this phase" not in html
