"""Replies for the review tests, stored through the real intake
(metrics.ingest.intake.record_events)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from metrics.ingest.intake import record_events

WEEK = date(2026, 3, 2)  # a Monday
GOOD = {
    "hallucination": "none",
    "format": "followed",
    "uncertainty": "appropriate",
    "consistent": "yes",
    "sounds_like_sel": "4",
}


def reply(
    n: int,
    *,
    variant: str = "v1",
    day: int = 0,
    channel: int = 0,
    text: bool = True,
    conversation: str = "",
    rollout: str = "prompts_v2",
    hour: int = 12,
) -> dict:
    ts = datetime.combine(WEEK, datetime.min.time(), tzinfo=UTC) + timedelta(
        days=day, hours=hour, seconds=n
    )
    event = {
        "id": f"rv-{rollout}-{n}",
        "type": "response",
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "channel_id": str(100000000000000000 + channel),
        "message_id": f"msg-{rollout}-{n}",
        "rollout": rollout,
        "variant": variant,
        "model": "anthropic/claude-3.5-sonnet",
        "input_tokens": 500,
        "output_tokens": 120,
        "latency_ms": 900.0,
        "error": None,
    }
    if text:
        event["user_text"] = f"Question number {n}: what is the capital of Australia?"
        event["response_text"] = f"Answer {n}: Canberra, not Sydney."
    if conversation:
        event["conversation_id"] = conversation
    return event


def store_week(
    per_variant: dict[str, int], *, channels: int = 3, start: int = 0, **kwargs
) -> list[dict]:
    events = []
    n = start
    for variant, count in per_variant.items():
        for i in range(count):
            n += 1
            events.append(reply(n, variant=variant, day=i % 7, channel=i % channels, **kwargs))
    result = record_events(events, now=datetime(2026, 3, 20, tzinfo=UTC))
    assert not result.rejected, result.rejected
    return events
