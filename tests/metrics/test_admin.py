"""Admin: the price table, sentiment map and patterns are editable by staff; events are
read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from metrics.ingest.intake import record_events
from metrics.models import ModelPrice

from .conftest import response

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    return client


def test_price_admin__default_rows__guide_sonnet_price_and_the_bots_model_id(admin_client):
    page = admin_client.get("/admin/metrics/modelprice/")
    assert page.status_code == 200
    rows = ModelPrice.objects.order_by("valid_from")
    assert [(r.model, r.input_per_million, r.output_per_million) for r in rows] == [
        ("anthropic/claude-3.5-sonnet", 3, 15),
        ("anthropic/claude-3-5-sonnet-20241022", 3, 15),
    ]
    assert "anthropic/claude-3-5-sonnet-20241022" in page.content.decode()


def test_price_admin__unpriced_model_seen__warned_on_changelist(admin_client):
    from django.utils import timezone

    record_events([response("a", model="mystery/model", ts=timezone.now())])
    assert "mystery/model" in admin_client.get("/admin/metrics/modelprice/").content.decode()


def test_price_admin__add_row__saved(admin_client):
    answer = admin_client.post(
        "/admin/metrics/modelprice/add/",
        {
            "model": "anthropic/claude-opus-4.5",
            "valid_from_0": "2026-01-01",
            "valid_from_1": "00:00:00",
            "input_per_million": "5",
            "output_per_million": "25",
            "cached_per_million": "0.5",
            "note": "",
        },
    )
    assert answer.status_code == 302
    assert ModelPrice.objects.filter(model="anthropic/claude-opus-4.5").exists()


@pytest.mark.parametrize(
    "page",
    [
        "emojisentiment",
        "correctionpattern",
        "responseevent",
        "reactionevent",
        "followupevent",
        "hourlyrollup",
        "dirtyhour",
    ],
)
def test_metrics_admin__changelists__render(admin_client, page):
    assert admin_client.get(f"/admin/metrics/{page}/").status_code == 200


def test_correction_pattern_admin__invalid_regex__refused_with_sentence(admin_client):
    answer = admin_client.post(
        "/admin/metrics/correctionpattern/add/", {"pattern": "(unclosed", "enabled": "on"}
    )
    assert answer.status_code == 200
    assert "Not a valid regular expression" in answer.content.decode()
