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
    call_command("create_api_token", "sel-bot", "--scope", "config:read", "--scope", "events:write", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("sc_") and " " not in raw
    token = ApiToken.objects.get(name="sel-bot")
    assert token.token_hash == ApiToken.hash(raw) and raw not in token.token_hash
    assert token.scopes == ["config:read", "events:write"]
    assert ApiClient(raw).get("/api/v1/config").status_code == 200
    assert AuditEntry.objects.filter(action="token.create").exists()


def test_create_api_token__duplicate_name__clear_error():
    call_command("create_api_token", "x", "--scope", "config:read", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_api_token", "x", "--scope", "config:read", stdout=io.StringIO(), stderr=io.StringIO())


def test_revoke_api_token__then_401():
    out = io.StringIO()
    call_command("create_api_token", "old", "--scope", "config:read", stdout=out, stderr=io.StringIO())
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
