"""Event factories and helpers for the metrics tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from metrics import rollups

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
CHANNEL = "123456789012345678"
_seq = count(1)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def response(
    eid: str | None = None,
    *,
    message_id: str | None = None,
    ts: datetime = T0,
    variant: str = "v1",
    rollout: str = "prompts_v2",
    channel_id: str = CHANNEL,
    model: str = "anthropic/claude-3.5-sonnet",
    input_tokens: int = 500,
    output_tokens: int = 200,
    latency_ms: float = 1200.0,
    error: str | None = None,
    **extra,
) -> dict:
    n = next(_seq)
    eid = eid or f"r-{n}"
    return {
        "id": eid,
        "type": "response",
        "ts": iso(ts),
        "channel_id": channel_id,
        "message_id": message_id or f"m-{eid}",
        "rollout": rollout,
        "variant": variant,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_ms": latency_ms,
        "error": error,
        **extra,
    }


def reaction(
    message_id: str,
    emoji: str = "👍",
    action: str = "add",
    *,
    eid: str | None = None,
    ts: datetime = T0 + timedelta(minutes=1),
    user_id: str = "u1",
) -> dict:
    return {
        "id": eid or f"x-{next(_seq)}",
        "type": "reaction",
        "ts": iso(ts),
        "channel_id": CHANNEL,
        "message_id": message_id,
        "emoji": emoji,
        "action": action,
        "user_id": user_id,
    }


def followup(
    reply_to: str,
    text: str = "thanks!",
    *,
    eid: str | None = None,
    ts: datetime = T0 + timedelta(minutes=2),
    **extra,
) -> dict:
    n = next(_seq)
    return {
        "id": eid or f"f-{n}",
        "type": "followup",
        "ts": iso(ts),
        "channel_id": CHANNEL,
        "message_id": f"um-{n}",
        "reply_to": reply_to,
        "text": text,
        **extra,
    }


def totals(
    since: datetime = T0 - timedelta(days=1), until: datetime = T0 + timedelta(days=1)
) -> dict:
    return rollups.totals_by_variant("prompts_v2", since, until)


@pytest.fixture
def committed(transactional_db) -> None:
    """transactional_db flushes every table after each test, the migrations' rows included:
    put back the default rollout, sentiment map, patterns and prices."""
    import importlib

    from django.apps import apps

    for module in (
        "rollout.migrations.0002_default_rollout",
        "metrics.migrations.0002_default_feedback_and_prices",
    ):
        importlib.import_module(module).forwards(apps, None)


@pytest.fixture
def bot(reader):
    """The bot's API client (config:read, events:write)."""
    return reader
