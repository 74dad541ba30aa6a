"""Who gets which variant among the channels seen lately, and what a change would move.

Pure functions over an ``assignment.Rule``, a list of channel ids and a traffic count per channel
(the console feeds them from ``metrics.selectors``); no database. The rule itself is
``selcontrol_client.assignment``: never re-implemented here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from selcontrol_client import assignment


@dataclass(frozen=True)
class VariantShare:
    variant: str
    channels: int
    traffic: int
    traffic_share: float  # 0..1 of the traffic seen; 0 when none was seen


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    channels: int
    traffic: int


@dataclass(frozen=True)
class Preview:
    moves: list[Move]
    known_channels: int
    total_traffic: int

    @property
    def moved_channels(self) -> int:
        return sum(m.channels for m in self.moves)

    @property
    def moved_traffic(self) -> int:
        return sum(m.traffic for m in self.moves)

    @property
    def moved_traffic_share(self) -> float:
        return self.moved_traffic / self.total_traffic if self.total_traffic else 0.0


def _channels(channels: Iterable[str], traffic: Mapping[str, int]) -> list[str]:
    return sorted(set(channels) | set(traffic))


def variant_shares(
    rule: assignment.Rule,
    channels: Iterable[str],
    traffic: Mapping[str, int],
    now: datetime,
) -> list[VariantShare]:
    """Channel count and traffic share per variant (control, treatment, simplified order)."""
    counts: Counter[str] = Counter()
    volume: Counter[str] = Counter()
    for channel in _channels(channels, traffic):
        variant, _ = assignment.decide(rule, channel, now)
        counts[variant] += 1
        volume[variant] += traffic.get(channel, 0)
    total = sum(volume.values())
    variants = list(rule.variants) + sorted(set(counts) - set(rule.variants))
    return [
        VariantShare(v, counts[v], volume[v], volume[v] / total if total else 0.0) for v in variants
    ]


def preview_change(
    before: assignment.Rule,
    after: assignment.Rule,
    channels: Iterable[str],
    traffic: Mapping[str, int],
    now: datetime,
) -> Preview:
    """Which channels would switch variant going from ``before`` to ``after``, grouped by
    direction, largest group first."""
    moved: Counter[tuple[str, str]] = Counter()
    moved_traffic: Counter[tuple[str, str]] = Counter()
    known = _channels(channels, traffic)
    for channel in known:
        old, _ = assignment.decide(before, channel, now)
        new, _ = assignment.decide(after, channel, now)
        if old != new:
            moved[(old, new)] += 1
            moved_traffic[(old, new)] += traffic.get(channel, 0)
    moves = [
        Move(source, target, n, moved_traffic[(source, target)])
        for (source, target), n in sorted(moved.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return Preview(moves, len(known), sum(traffic.get(c, 0) for c in known))


def with_percentages(rule: assignment.Rule, percentage: int, simplified: int) -> assignment.Rule:
    return replace(rule, percentage=percentage, simplified_percentage=simplified)


def explain(rule: assignment.Rule, channel_id: str, now: datetime) -> dict:
    """Which variant a channel gets and the numbers behind it, for the "why" lookup."""
    variant, reason = assignment.decide(rule, channel_id, now)
    key = rule.channel_key(channel_id)
    return {
        "channel_id": channel_id,
        "variant": variant,
        "reason": reason,
        "bucket": assignment.bucket(key),
        "simplified_bucket": assignment.bucket(f"{key}:simplified"),
        "override": rule.overrides.get(channel_id),
    }
