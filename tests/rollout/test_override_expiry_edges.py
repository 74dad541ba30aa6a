"""Issue 15, item 1: an override's expiry at the calendar's edge never takes config sync down.

`"expires_at": "9999-12-31T23:59:59-14:00"` is year 10000 in UTC: PostgreSQL stored it and
psycopg could not read it back, so config, decide, the overrides list, the console and the
override itself answered 500 until someone repaired it in SQL.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from rollout import config as rollout_config
from rollout import services
from rollout.models import AuditEntry, ChannelOverride
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db

KEY = "prompts_v2"
CHANNEL = "123456789012345678"
OVERRIDE = f"/api/v1/rollouts/{KEY}/overrides/{CHANNEL}"
EDGE = "9999-12-31T23:59:59-14:00"


def _everything_still_answers(operator_api, operator_client, *, expect_override: bool) -> None:
    config = operator_api.get("/api/v1/config")
    assert config.status_code == 200, config.content
    overrides = config.json()["rollouts"][0]["overrides"]
    assert (CHANNEL in overrides) is expect_override
    decide = operator_api.get(f"/api/v1/rollouts/{KEY}/decide", channel_id=CHANNEL)
    assert decide.status_code == 200, decide.content
    listed = operator_api.get(f"/api/v1/rollouts/{KEY}/overrides")
    assert listed.status_code == 200, listed.content
    assert [o["channel_id"] for o in listed.json()] == ([CHANNEL] if expect_override else [])
    assert operator_client.get(f"/rollouts/{KEY}/").status_code == 200
    lookup = operator_client.get(f"/rollouts/{KEY}/lookup/", {"channel_id": CHANNEL})
    assert lookup.status_code == 200, lookup.content


@pytest.mark.parametrize("edge", [EDGE, "0001-01-01T00:00:00+14:00"])
def test_put_override__expiry_at_calendar_edge__400_sentence_nothing_stored(
    operator_api, operator_client, edge
):
    revision = operator_api.get(f"/api/v1/rollouts/{KEY}").json()["revision"]
    response = operator_api.put(
        OVERRIDE, {"variant": "v2_full", "reason": "vip", "expires_at": edge}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"expires_at {edge!r} is outside the times selcontrol can keep")
    assert not ChannelOverride.objects.exists()
    assert operator_api.get(f"/api/v1/rollouts/{KEY}").json()["revision"] == revision
    _everything_still_answers(operator_api, operator_client, expect_override=False)


def test_put_override__after_edge_refused__put_delete_and_rollback_reach_config(
    operator_api, operator_client
):
    operator_api.put(OVERRIDE, {"variant": "v2_full", "reason": "vip", "expires_at": EDGE})
    put = operator_api.put(
        OVERRIDE, {"variant": "v2_full", "reason": "vip", "expires_at": "9999-12-30T00:00:00Z"}
    )
    assert put.status_code == 201, put.content
    assert put.json()["expires_at"].startswith("9999-12-30T00:00:00")
    _everything_still_answers(operator_api, operator_client, expect_override=True)

    rollback = operator_api.post(f"/api/v1/rollouts/{KEY}/rollback", {"reason": "incident"})
    assert rollback.status_code == 200
    config = operator_api.get("/api/v1/config").json()
    assert config["rollouts"][0]["enabled"] is False
    assert config["revision"] == rollback.json()["revision"]
    decided = operator_api.get(f"/api/v1/rollouts/{KEY}/decide", channel_id=CHANNEL).json()
    assert (decided["variant"], decided["reason"]) == ("v1", "kill_switch")

    delete = operator_api.delete(OVERRIDE)
    assert delete.status_code == 204
    _everything_still_answers(operator_api, operator_client, expect_override=False)


def test_set_override__service__refuses_expiry_past_the_readable_range(rollout):
    from datetime import datetime, timedelta, timezone

    edge = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(services.InvalidChange, match="outside the times selcontrol can keep"):
        services.set_override(
            rollout, CHANNEL, variant="v1", actor=SYSTEM, reason="x", expires_at=edge
        )
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.OVERRIDE_SET).exists()


def test_override_table__unreadable_expiry__refused_by_the_database(rollout):
    """Even SQL that bypasses the services cannot store a time psycopg cannot read back."""
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rollout_channeloverride (rollout_id, channel_id, variant, reason, "
            "created_by, created_at, expires_at) VALUES (%s, %s, 'v1', 'x', 'sql', now(), "
            "'9999-12-31T23:59:59-14:00')",
            [rollout.pk, CHANNEL],
        )


def test_migration__row_stored_before_the_constraint__clamped_and_config_builds_again(rollout):
    """A database that already holds such a row (stored before this release) is repaired by the
    migration without reading the row, and the config document builds again."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("rollout.migrations.0005_api_override_expiry_phase_edit")
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE rollout_channeloverride DROP CONSTRAINT override_expires_at_readable"
        )
        cursor.execute(
            "INSERT INTO rollout_channeloverride (rollout_id, channel_id, variant, reason, "
            "created_by, created_at, expires_at) VALUES (%s, %s, 'v2_full', 'x', 'sql', now(), "
            "'9999-12-31T23:59:59-14:00')",
            [rollout.pk, CHANNEL],
        )
    with pytest.raises(Exception, match="year 10000|out of range|too large"):
        with transaction.atomic():
            rollout_config.build_config()

    migration.clamp_unreadable_expiries(apps, None)

    document = rollout_config.build_config()
    assert document["rollouts"][0]["overrides"][CHANNEL]["expires_at"].startswith("9999-12-30")
    with connection.cursor() as cursor:  # the constraint holds for the repaired table
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush the insert's deferred FK check
        cursor.execute(
            "ALTER TABLE rollout_channeloverride ADD CONSTRAINT override_expires_at_readable "
            "CHECK (expires_at IS NULL OR expires_at BETWEEN '0001-01-02T00:00:00Z' AND "
            "'9999-12-30T23:59:59.999999Z')"
        )
