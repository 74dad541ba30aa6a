"""Bodies a real HTTP server hands over differently (issue 15): chunked bodies through gunicorn
are read whole, not taken for empty; oversized ones get 413; one bad event never sinks a batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from metrics.models import ReactionEvent, ResponseEvent


@pytest.fixture
def bot(server, bot_token) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {bot_token}"}, timeout=30
    ) as client:
        yield client


def _reaction(eid: str) -> dict:
    return {
        "id": eid,
        "type": "reaction",
        "ts": datetime.now(UTC).isoformat(),
        "channel_id": "123456789012345678",
        "message_id": "m-1",
        "emoji": "👍",
        "action": "add",
    }


def _chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_events__chunked_body_through_gunicorn__read_and_stored(rollout, bot):
    body = json.dumps({"events": [_reaction(f"chunk-{i}") for i in range(50)]}).encode()
    answer = bot.post(
        "/api/v1/events", content=_chunks(body), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 50, "duplicates": 0, "rejected": []}
    assert ReactionEvent.objects.filter(event_id__startswith="chunk-").count() == 50


def test_events__chunked_body_over_8_mib__413_sentence_nothing_stored(rollout, bot):
    body = json.dumps({"events": [_reaction("big")], "pad": "x" * (9 * 1024 * 1024)}).encode()
    answer = bot.post(
        "/api/v1/events",
        content=_chunks(body, 1 << 20),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert "larger than 8 MiB" in answer.json()["error"]
    assert not ReactionEvent.objects.exists()


def test_events__one_bad_event_among_21__the_20_stored(rollout, bot):
    """The issue's client run: one reply with a lone surrogate, then 20 normal ones."""
    replies = []
    for i in range(21):
        replies.append(
            {
                "id": f"reply-{i}",
                "type": "response",
                "ts": datetime.now(UTC).isoformat(),
                "channel_id": "123456789012345678",
                "message_id": f"msg-{i}",
                "rollout": "prompts_v2",
                "variant": "v1",
                "model": "anthropic/claude-3.5-sonnet",
                "input_tokens": 10,
                "output_tokens": 5,
                "latency_ms": 100,
                "error": None,
                "user_text": "hi \ud800" if i == 0 else "hi",
            }
        )
    answer = bot.post(
        "/api/v1/events",
        content=json.dumps({"events": replies}),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 20
    assert [r["index"] for r in answer.json()["rejected"]] == [0]
    assert ResponseEvent.objects.count() == 20
