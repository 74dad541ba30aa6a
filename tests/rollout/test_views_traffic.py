"""Console figures fed by real events: channel counts, traffic shares and the slider preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.urls import reverse

from metrics.ingest.intake import record_events
from rollout import services
from selcontrol_client import assignment
from tests.conftest import SYSTEM

HX = {"HX-Request": "true"}
KEY = "prompts_v2"


def send_replies(per_channel: dict[str, int], *, ago: timedelta = timedelta(hours=1)) -> None:
    ts = (datetime.now(UTC) - ago).isoformat().replace("+00:00", "Z")
    events = []
    for channel, n in per_channel.items():
        for i in range(n):
            eid = f"{channel}-{i}-{ago.total_seconds():.0f}"
            events.append(
                {
                    "id": eid,
                    "type": "response",
                    "ts": ts,
                    "channel_id": channel,
                    "message_id": f"m-{eid}",
                    "rollout": KEY,
                    "variant": "v1",
                    "model": "anthropic/claude-3.5-sonnet",
                    "input_tokens": 500,
                    "output_tokens": 200,
                    "latency_ms": 900.0,
                    "error": None,
                }
            )
    result = record_events(events)
    assert result.accepted == len(events), result.rejected


def channels_by_bucket(lo: int, hi: int, n: int) -> list[str]:
    """n channel ids whose bucket is in [lo, hi)."""
    found, i = [], 0
    while len(found) < n:
        cid = str(100000 + i)
        if lo <= assignment.bucket(cid) < hi:
            found.append(cid)
        i += 1
    return found


def test_status__traffic__channel_counts_and_shares_per_variant(operator_client, rollout):
    services.update_rollout(rollout, actor=SYSTEM, reason="r", enabled=True, percentage=50)
    treated = channels_by_bucket(0, 50, 2)
    control = channels_by_bucket(50, 100, 3)
    send_replies({treated[0]: 6, treated[1]: 2, **{c: 4 for c in control}})
    response = operator_client.get(reverse("rollout:section", args=[KEY, "status"]), headers=HX)
    shares = {s.variant: s for s in response.context["shares"]}
    assert (shares["v1"].channels, shares["v2_full"].channels) == (3, 2)
    assert (shares["v1"].traffic, shares["v2_full"].traffic) == (12, 8)
    assert "40%" in response.content.decode()  # v2_full: 8 of 20 replies


def test_status__traffic_older_than_a_day__not_counted(operator_client, rollout):
    send_replies({"555": 3}, ago=timedelta(hours=30))
    response = operator_client.get(reverse("rollout:section", args=[KEY, "status"]), headers=HX)
    assert response.context["known_channels"] == 0
    assert "No traffic seen yet" in response.content.decode()


def test_preview__raising__counts_channels_moving_v1_to_v2(operator_client, rollout):
    services.update_rollout(rollout, actor=SYSTEM, reason="r", enabled=True, percentage=5)
    moving = channels_by_bucket(5, 20, 3)
    staying = channels_by_bucket(20, 100, 5)
    send_replies({**{c: 2 for c in moving}, **{c: 1 for c in staying}})
    response = operator_client.get(
        reverse("rollout:preview", args=[KEY]), {"percentage": "20"}, headers=HX
    )
    preview = response.context["preview"]
    assert (preview.moved_channels, preview.known_channels) == (3, 8)
    assert [(m.source, m.target) for m in preview.moves] == [("v1", "v2_full")]
    html = response.content.decode()
    assert "Raising to 20%" in html and "55%" in html  # 6 of 11 replies


def test_preview__lowering__moves_back_to_v1(operator_client, rollout):
    services.update_rollout(rollout, actor=SYSTEM, reason="r", enabled=True, percentage=20)
    send_replies({c: 1 for c in channels_by_bucket(5, 20, 2)})
    response = operator_client.get(
        reverse("rollout:preview", args=[KEY]), {"percentage": "5"}, headers=HX
    )
    assert [(m.source, m.target, m.channels) for m in response.context["preview"].moves] == [
        ("v2_full", "v1", 2)
    ]
    assert "Lowering to 5%" in response.content.decode()


def test_preview__kill_switch_on__says_nothing_moves(operator_client, rollout):
    send_replies({"1": 1})
    response = operator_client.get(
        reverse("rollout:preview", args=[KEY]), {"percentage": "50"}, headers=HX
    )
    assert "kill switch is on" in response.content.decode()
