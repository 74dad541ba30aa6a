"""POST /api/v1/instances/report and GET /api/v1/instances, through Django's test client on
PostgreSQL; acknowledgements and ChangeAck through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rollout import fleet, services
from rollout.models import ChangeAck, ExposureCount, Instance, InstanceAck, UnackedInstance
from tests.conftest import SYSTEM, ApiClient

URL = "/api/v1/instances/report"


@pytest.fixture
def rollout(rollout):
    """prompts_v2 at 20% (the migration leaves the kill switch on): a rollback changes it."""
    return services.update_rollout(
        rollout, actor=SYSTEM, reason="start the test rollout", enabled=True, percentage=20
    )


def _report(instance_id: str = "bot-a", revision: int = 1, **extra) -> dict:
    body = {
        "instance_id": instance_id,
        "host": "sel-1",
        "pid": 4242,
        "client_version": "0.1.0",
        "started_at": "2026-11-25T12:00:00Z",
        "revision": revision,
        "config_source": "server",
        "exposures": [],
        "events": {"sent": 3, "buffered": 0, "dropped": 0},
        "last_sync_error": None,
    }
    body.update(extra)
    return body


def _exposures(revision: int, **counts: int) -> list[dict]:
    return [
        {"rollout": "prompts_v2", "revision": revision, "variant": v, "count": n}
        for v, n in counts.items()
    ]


def _total(variant: str) -> int:
    return sum(ExposureCount.objects.filter(variant=variant).values_list("count", flat=True))


def test_report__first_time__creates_the_instance_and_its_ack(reader, rollout):
    response = reader.post(URL, _report(revision=rollout.revision))
    assert response.status_code == 200, response.content
    instance = Instance.objects.get(instance_id="bot-a")
    assert (instance.host, instance.pid, instance.revision) == ("sel-1", 4242, rollout.revision)
    assert list(InstanceAck.objects.values_list("revision", flat=True)) == [rollout.revision]


def test_report__same_totals_sent_twice__counted_once(reader, rollout):
    body = _report(exposures=_exposures(rollout.revision, v1=40, v2_full=10))
    reader.post(URL, body)
    reader.post(URL, body)
    reader.post(URL, _report(exposures=_exposures(rollout.revision, v1=45, v2_full=10)))
    assert (_total("v1"), _total("v2_full")) == (45, 10)


def test_report__revision_moves__records_one_ack_per_revision(reader, rollout):
    for revision in (1, 1, 2, 2, 3):
        reader.post(URL, _report(revision=revision))
    acks = InstanceAck.objects.filter(instance__instance_id="bot-a")
    assert list(acks.values_list("revision", flat=True)) == [1, 2, 3]


def test_report__config_read_token_only__403(make_token, rollout):
    response = ApiClient(make_token("config:read")).post(URL, _report())
    assert response.status_code == 403
    assert "events:write" in response.json()["error"]


def test_report__no_token__401(rollout):
    assert ApiClient(None).post(URL, _report()).status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"instance_id": "has spaces"}, "instance_id"),
        ({"pid": -1}, "pid"),
        ({"revision": "latest"}, "revision"),
        ({"started_at": "yesterday"}, "started_at"),
        (
            {"exposures": [{"rollout": "prompts_v2", "revision": 1, "variant": "v1", "count": -5}]},
            "count",
        ),
        ({"events": {"dropped": "many"}}, "events"),
    ],
)
def test_report__bad_field__400_naming_it(reader, rollout, change, field):
    response = reader.post(URL, _report(**change))
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert not Instance.objects.exists()


def test_report__missing_field__400_naming_it(reader, rollout):
    body = _report()
    del body["host"]
    response = reader.post(URL, body)
    assert response.status_code == 400 and response.json()["error"] == "host is required."


@pytest.mark.parametrize("started_at", ["1062-10-02T12:08:46+23:58", "2999-01-01T00:00:00Z"])
def test_report__implausible_started_at__400(reader, rollout, started_at):
    response = reader.post(URL, _report(started_at=started_at))
    assert response.status_code == 400 and "started_at" in response.json()["error"]


def test_report__naive_started_at__400(reader, rollout):
    response = reader.post(URL, _report(started_at="2026-11-25T12:00:00"))
    assert response.status_code == 400 and "started_at" in response.json()["error"]


def _rollback(rollout):
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="test rollback")
    rollout.refresh_from_db()
    return fleet.latest_change(rollout)


def test_change_status__two_of_three_acked__counts_and_waits(reader, rollout):
    for name in ("a", "b", "c"):
        reader.post(URL, _report(instance_id=name, revision=rollout.revision))
    entry = _rollback(rollout)
    for name in ("a", "b"):
        reader.post(URL, _report(instance_id=name, revision=rollout.revision))
    status = fleet.change_status(entry)
    assert (status.acked, status.live, status.complete) == (2, 3, False)
    assert [r.instance.instance_id for r in status.waiting] == ["c"]


def test_settle_changes__last_live_instance_acks__writes_change_ack(reader, rollout):
    for name in ("a", "b"):
        reader.post(URL, _report(instance_id=name, revision=rollout.revision))
    entry = _rollback(rollout)
    reader.post(URL, _report(instance_id="a", revision=rollout.revision))
    assert not ChangeAck.objects.filter(audit_entry=entry).exists()
    reader.post(URL, _report(instance_id="b", revision=rollout.revision))
    ack = ChangeAck.objects.get(audit_entry=entry)
    assert (ack.acked, ack.live) == (2, 2) and ack.seconds >= 0


def test_settle_changes__instance_behind_after_timeout__flagged_once_with_an_alert(
    reader, rollout, settings
):
    from metrics.guardrails.models import Alert

    settings.SELCONTROL_ACK_TIMEOUT_SECONDS = 5
    for name in ("a", "b"):
        reader.post(URL, _report(instance_id=name, revision=rollout.revision))
    old = rollout.revision
    entry = _rollback(rollout)
    reader.post(URL, _report(instance_id="a", revision=rollout.revision))
    later = entry.created_at + timedelta(seconds=6)
    Instance.objects.update(last_seen_at=later)
    fleet.settle_changes(later)
    fleet.settle_changes(later)
    flag = UnackedInstance.objects.get()
    assert (flag.instance_id, flag.revision) == ("b", old)
    alert = Alert.objects.get(pk=flag.alert_id)
    assert "has not picked up the change" in alert.title and alert.rollout_id == rollout.pk


def test_fleet_rows__not_reported_for_a_minute__stale(reader, rollout):
    reader.post(URL, _report(revision=rollout.revision))
    Instance.objects.update(last_seen_at=timezone.now() - timedelta(seconds=60))
    assert [r.state for r in fleet.fleet_rows()] == ["stale"]


def test_fleet_rows__not_reported_for_ten_minutes__dropped(reader, rollout):
    reader.post(URL, _report(revision=rollout.revision))
    Instance.objects.update(last_seen_at=timezone.now() - timedelta(minutes=10))
    assert fleet.fleet_rows() == []


def test_instances_endpoint__lists_instances_and_the_latest_change(reader, rollout):
    reader.post(URL, _report(revision=rollout.revision))
    _rollback(rollout)
    body = reader.get("/api/v1/instances").json()
    assert [i["state"] for i in body["instances"]] == ["behind"]
    assert (body["latest_change"]["acked"], body["latest_change"]["live"]) == (0, 1)


def test_fleet_panel__behind_instance_after_timeout__shown_red(
    reader, rollout, viewer_client, settings
):
    settings.SELCONTROL_ACK_TIMEOUT_SECONDS = 0
    reader.post(URL, _report(instance_id="a", revision=rollout.revision))
    reader.post(URL, _report(instance_id="b", revision=rollout.revision))
    _rollback(rollout)
    reader.post(URL, _report(instance_id="a", revision=rollout.revision))
    html = viewer_client.get(f"/rollouts/{rollout.key}/fleet/").content.decode()
    assert 'data-acked="1" data-live="2"' in html
    assert 'data-instance="b" data-state="overdue"' in html


def test_fleet_srm_panel__renders_for_a_viewer(viewer_client, rollout):
    response = viewer_client.get(f"/rollouts/{rollout.key}/fleet/srm/")
    assert response.status_code == 200 and b'data-test="decisions"' in response.content


def test_fleet_panel__anonymous__redirected_to_login(client, rollout):
    assert client.get(f"/rollouts/{rollout.key}/fleet/").status_code == 302
