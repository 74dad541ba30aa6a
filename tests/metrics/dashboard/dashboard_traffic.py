"""Deterministic simulated traffic for the dashboard tests and screenshots.

Events go through the real intake (metrics.ingest.intake.record_events) and the real rollup job, so
the dashboard reads exactly what production would. ``Profile`` says how a variant behaves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from metrics import rollups
from metrics.ingest import intake

MODEL = "anthropic/claude-3.5-sonnet"  # priced by the default migration: $3/M in, $15/M out


@dataclass(frozen=True)
class Profile:
    input_tokens: int = 500
    output_tokens: int = 120
    latency_ms: float = 900.0
    error_rate: float = 0.02
    timeout_share: float = 0.5  # of errors
    positive: float = 0.30  # share of replies with a positive reaction
    negative: float = 0.05
    correction: float = 0.04  # share of replies with a correcting follow-up
    followup: float = 0.10  # share with a plain follow-up
    cache_hit: float = 0.4


V1 = Profile()
V2 = Profile(
    input_tokens=1750,
    output_tokens=140,
    latency_ms=1050.0,
    error_rate=0.015,
    positive=0.38,
    negative=0.03,
    correction=0.02,
    cache_hit=0.55,
)


def events_for(
    variant: str,
    profile: Profile,
    start: datetime,
    hours: int,
    per_hour: int,
    seed: int = 1,
    rollout: str = "prompts_v2",
) -> list[dict]:
    rng = random.Random(f"{seed}:{variant}")
    out: list[dict] = []
    for h in range(hours):
        for i in range(per_hour):
            ts = start + timedelta(hours=h, seconds=rng.randrange(3600))
            mid = f"{variant}-{seed}-{h}-{i}"
            channel = str(10**17 + rng.randrange(200))
            error = None
            if rng.random() < profile.error_rate:
                error = "timeout" if rng.random() < profile.timeout_share else "provider_error"
            out.append(
                {
                    "id": f"r-{mid}",
                    "type": "response",
                    "ts": ts.isoformat(),
                    "channel_id": channel,
                    "message_id": mid,
                    "rollout": rollout,
                    "variant": variant,
                    "model": MODEL,
                    "input_tokens": max(
                        1, int(rng.gauss(profile.input_tokens, profile.input_tokens * 0.1))
                    ),
                    "output_tokens": max(
                        1, int(rng.gauss(profile.output_tokens, profile.output_tokens * 0.3))
                    ),
                    "cache_hit": rng.random() < profile.cache_hit,
                    "latency_ms": round(rng.lognormvariate(0, 0.35) * profile.latency_ms, 1),
                    "error": error,
                    "conversation_id": f"conv-{variant}-{seed}-{h}-{i // 3}",
                }
            )
            later = (ts + timedelta(seconds=30)).isoformat()
            roll = rng.random()
            if roll < profile.positive:
                out.append(
                    {
                        "id": f"x-{mid}",
                        "type": "reaction",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": mid,
                        "emoji": "👍",
                        "action": "add",
                        "user_id": "u1",
                    }
                )
            elif roll < profile.positive + profile.negative:
                out.append(
                    {
                        "id": f"x-{mid}",
                        "type": "reaction",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": mid,
                        "emoji": "👎",
                        "action": "add",
                        "user_id": "u1",
                    }
                )
            roll = rng.random()
            if roll < profile.correction + profile.followup:
                out.append(
                    {
                        "id": f"f-{mid}",
                        "type": "followup",
                        "ts": later,
                        "channel_id": channel,
                        "message_id": f"u-{mid}",
                        "reply_to": mid,
                        "text": "thanks",
                        "is_correction": roll < profile.correction,
                    }
                )
    return out


def load(events: list[dict], now: datetime | None = None, chunk: int = 5000) -> None:
    """Record events through the intake and bring every rollup up to date."""
    for start in range(0, len(events), chunk):
        result = intake.record_events(events[start : start + chunk], now=now)
        assert not result.rejected, result.rejected[:3]
    while rollups.catch_up(time_budget=600)["remaining"]:
        pass
