"""The console slider's projection fragment before any v2 reply exists (no module-wide traffic
here, unlike test_dashboard.py)."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from metrics import rollups
from tests.metrics.dashboard.dashboard_traffic import V1, events_for, load


def url(name, **query):
    from urllib.parse import urlencode

    return reverse(f"metrics:{name}") + f"?{urlencode(query)}"


def test_projection__no_v2_replies__uses_the_guide_factor(viewer_client, rollout):
    now = timezone.now()
    load(events_for("v1", V1, rollups.hour_of(now) - timedelta(hours=3), 3, 5), now=now)
    html = viewer_client.get(
        url("projection", rollout="prompts_v2", percentage=100)
    ).content.decode()
    assert "guide's 3.5× estimate" in html
