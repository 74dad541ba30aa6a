"""The audit log cannot be edited or deleted through the app: not through the model, not
through the admin (even by a superuser), and the console has no route that writes to it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import get_resolver

from rollout import services
from rollout.models import AuditEntry
from tests.conftest import SYSTEM


@pytest.fixture
def entry(rollout) -> AuditEntry:
    services.update_rollout(rollout, actor=SYSTEM, reason="audited change", percentage=5)
    return AuditEntry.objects.filter(rollout=rollout).latest("created_at")


@pytest.fixture
def admin_client(db) -> Client:
    user = User.objects.create_superuser("root", password="root-password-long-enough")
    client = Client()
    client.force_login(user)
    return client


def test_audit_entry__saved_again__refused(entry):
    entry.reason = "rewritten history"
    with pytest.raises(ValidationError, match="append-only"):
        entry.save()
    entry.refresh_from_db()
    assert entry.reason == "audited change"


def test_audit_entry__deleted__refused(entry):
    with pytest.raises(ValidationError, match="append-only"):
        entry.delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin__audit_entry_page__read_only(admin_client, entry):
    url = f"/admin/rollout/auditentry/{entry.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert "deletelink" not in html


def test_admin__audit_entry_change_posted__403_and_unchanged(admin_client, entry):
    response = admin_client.post(
        f"/admin/rollout/auditentry/{entry.pk}/change/",
        {"reason": "rewritten", "actor": "someone else", "action": entry.action, "via": "web"},
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert (entry.reason, entry.actor) == ("audited change", "pytest")


def test_admin__audit_entry_delete_page__403(admin_client, entry):
    url = f"/admin/rollout/auditentry/{entry.pk}/delete/"
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin__bulk_delete_action__not_offered_and_refused(admin_client, entry):
    changelist = admin_client.get("/admin/rollout/auditentry/")
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    admin_client.post(
        "/admin/rollout/auditentry/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin__add_audit_entry__403(admin_client, rollout):
    assert admin_client.get("/admin/rollout/auditentry/add/").status_code == 403


def test_console__no_route_under_audit__accepts_a_write(operator_client, entry):
    """Every console URL with 'audit' in it refuses POST, PUT, PATCH and DELETE."""
    audit_routes = [
        str(p.pattern)
        for p in get_resolver("selcontrol.console.urls").url_patterns
        if "audit" in str(p.pattern)
    ]
    assert audit_routes == ["audit/"]
    for method in ("post", "put", "patch", "delete"):
        assert getattr(operator_client, method)("/audit/").status_code == 405
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
