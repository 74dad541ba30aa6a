"""Management commands: tokens from the shell, demo state."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from rollout.models import ApiToken, AuditEntry
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_create_api_token__prints_token_alone_on_last_line():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_token",
        "sel-bot",
        "--scope",
        "config:read",
        "--scope",
        "events:write",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("sc_") and " " not in raw
    token = ApiToken.objects.get(name="sel-bot")
    assert token.token_hash == ApiToken.hash(raw) and raw not in token.token_hash
    assert token.scopes == ["config:read", "events:write"]
    assert ApiClient(raw).get("/api/v1/config").status_code == 200
    assert AuditEntry.objects.filter(action="token.create").exists()


def test_create_api_token__duplicate_name__clear_error():
    call_command(
        "create_api_token",
        "x",
        "--scope",
        "config:read",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    with pytest.raises(CommandError, match="exists already"):
        call_command(
            "create_api_token",
            "x",
            "--scope",
            "config:read",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )


def test_revoke_api_token__then_401():
    out = io.StringIO()
    call_command(
        "create_api_token", "old", "--scope", "config:read", stdout=out, stderr=io.StringIO()
    )
    raw = out.getvalue().strip().splitlines()[-1]
    call_command("revoke_api_token", "old", stdout=io.StringIO())
    assert ApiClient(raw).get("/api/v1/config").status_code == 401


def test_seed_demo__idempotent_users_per_role(tmp_path, settings):
    settings.SELCONTROL_DEMO_TOKEN_FILE = str(tmp_path / "token")  # SELCONTROL_DEMO_TOKEN_FILE
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    assert sorted(User.objects.values_list("username", flat=True)) == [
        "operator",
        "reviewer",
        "reviewer2",
        "reviewer3",
        "viewer",
    ]
    assert User.objects.get(username="operator").groups.get().name == "operators"
    raw = (tmp_path / "token").read_text().strip()
    assert ApiClient(raw).get("/api/v1/config").status_code == 200


def test_admin__every_model_changelist_renders(admin_client):
    from django.contrib import admin

    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert admin_client.get(url).status_code == 200, url


def test_pages__need_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.fixture
def live(rollout):
    """The rollout started at Alpha's 5%."""
    from rollout import services
    from rollout.models import Phase

    alpha = Phase.objects.get(rollout=rollout, order=1)
    services.move_to_phase(
        rollout, phase=alpha, actor=services.Actor("pytest", via="system"), reason="start"
    )
    rollout.refresh_from_db()
    assert rollout.enabled
    return rollout


def _kill(*args):
    out = io.StringIO()
    call_command("kill_switch", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_kill_switch__on_from_the_shell__same_audited_rollback_as_the_console(live, reader):
    from rollout.models import ConfigState

    before = ConfigState.objects.get(pk=1).revision if ConfigState.objects.exists() else 0
    out = _kill(live.key, "on", "--reason", "v2 crashes in #general", "--by", "alice")
    live.refresh_from_db()
    assert not live.enabled
    assert "KILL SWITCH ON" in out and str(live.revision) in out
    assert live.revision > before
    entry = AuditEntry.objects.filter(rollout=live).latest("id")
    assert (entry.action, entry.actor, entry.via, entry.reason) == (
        "kill_switch.engage",
        "alice",
        "system",
        "v2 crashes in #general",
    )
    # the bot's next config poll sees it
    decision = reader.get(
        f"/api/v1/rollouts/{live.key}/decide?channel_id=123456789012345678"
    ).json()
    assert (decision["variant"], decision["reason"]) == (live.control_variant, "kill_switch")
    assert "KILL SWITCH ON" in _kill(live.key, "status")


def test_kill_switch__off_needs_a_percentage_and_a_reason(live):
    _kill(live.key, "on", "--reason", "incident")
    with pytest.raises(CommandError, match="--percentage 5"):
        _kill(live.key, "off", "--reason", "fixed")
    with pytest.raises(CommandError, match="reason"):
        _kill(live.key, "off", "--percentage", "5")
    with pytest.raises(CommandError, match="0 and 100|percentage"):
        _kill(live.key, "off", "--percentage", "101", "--reason", "fixed")
    live.refresh_from_db()
    assert not live.enabled
    out = _kill(live.key, "off", "--percentage", "5", "--reason", "fixed in v2.1")
    live.refresh_from_db()
    assert live.enabled and live.percentage == 5 and "live: 5%" in out
    assert AuditEntry.objects.filter(rollout=live, action="kill_switch.release").count() == 1


def test_kill_switch__unknown_rollout__names_the_known_ones(rollout):
    with pytest.raises(CommandError, match=f"known: {rollout.key}"):
        _kill("prompts_v3", "on", "--reason", "x")


def test_kill_switch__on_twice__second_changes_nothing(live):
    _kill(live.key, "on", "--reason", "incident")
    out = _kill(live.key, "on", "--reason", "again")
    assert "already on" in out
    assert AuditEntry.objects.filter(rollout=live, action="kill_switch.engage").count() == 1
