"""Which prompt version a channel gets: the one implementation of the assignment rule.

Pure functions, standard library only. The selcontrol server imports this module, and so does the
bot through ``selcontrol_client``: there is one copy of the rule (bot-contract.md, section 1).

    bucket(key) = int(sha256(key.encode("utf-8")).hexdigest(), 16) % 100

- kill switch on (``enabled`` false): every channel gets the control variant, overrides included;
- a live per-channel override comes next;
- otherwise a channel is in the treatment iff ``bucket(channel_key) < percentage`` (or, with the
  "daily rotation" strategy, ``(bucket(channel_key) + day_of_year) % 100 < percentage``);
- inside the treatment, the simplified share S picks the simplified variant iff
  ``bucket(f"{channel_key}:simplified") < S`` (S <= 0: never, S >= 100: always).

``channel_key`` is the channel id itself for the ``prompts_v2`` rollout (no salt), so the bot's
environment-variable rule and selcontrol put every channel in the same place. Other rollouts may
carry a salt, giving ``f"{salt}:{channel_id}"``, so that their buckets are independent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

STICKY = "sticky"
DAILY_ROTATION = "daily_rotation"
STRATEGIES = (STICKY, DAILY_ROTATION)

# Why a channel got its variant; the values of the decide endpoint's "reason".
REASON_KILL_SWITCH = "kill_switch"
REASON_OVERRIDE = "override"
REASON_PERCENTAGE = "percentage"
REASON_NOT_IN_ROLLOUT = "not_in_rollout"


def bucket(key: str) -> int:
    """The bucket 0..99 of a key, identical on every machine and in every process."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100


@dataclass(frozen=True, slots=True)
class Override:
    variant: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """Everything needed to decide one rollout, as shipped in ``GET /api/v1/config``."""

    key: str
    enabled: bool
    percentage: int
    simplified_percentage: int = 0
    strategy: str = STICKY
    salt: str = ""
    control: str = "v1"
    treatment: str = "v2_full"
    simplified: str = "v2_simplified"
    overrides: dict[str, Override] = field(default_factory=dict)
    revision: int = 0

    def channel_key(self, channel_id: str) -> str:
        return f"{self.salt}:{channel_id}" if self.salt else channel_id

    @property
    def variants(self) -> tuple[str, str, str]:
        return (self.control, self.treatment, self.simplified)


def in_treatment(rule: Rule, channel_id: str, day_of_year: int) -> bool:
    """The percentage rule alone: is this channel among the treated share?"""
    if rule.percentage <= 0:
        return False
    if rule.percentage >= 100:
        return True
    b = bucket(rule.channel_key(channel_id))
    if rule.strategy == DAILY_ROTATION:
        b = (b + day_of_year) % 100
    return b < rule.percentage


def treatment_variant(rule: Rule, channel_id: str) -> str:
    """Inside the treatment: the full or the simplified variant (the nested split)."""
    share = rule.simplified_percentage
    if share <= 0:
        return rule.treatment
    if share >= 100:
        return rule.simplified
    if bucket(f"{rule.channel_key(channel_id)}:simplified") < share:
        return rule.simplified
    return rule.treatment


def decide(rule: Rule, channel_id: str, now: datetime | None = None) -> tuple[str, str]:
    """Return ``(variant, reason)`` for a channel. ``now`` matters for override expiry and the
    daily rotation strategy (day of year in UTC); it defaults to the current time."""
    channel_id = str(channel_id)
    if not rule.enabled:
        return rule.control, REASON_KILL_SWITCH
    override = rule.overrides.get(channel_id)
    if override is not None and (
        override.expires_at is None or (now or _utcnow()) < override.expires_at
    ):
        return override.variant, REASON_OVERRIDE
    day = 0
    if rule.strategy == DAILY_ROTATION:
        day = (now or _utcnow()).astimezone(UTC).timetuple().tm_yday
    if in_treatment(rule, channel_id, day):
        return treatment_variant(rule, channel_id), REASON_PERCENTAGE
    return rule.control, REASON_NOT_IN_ROLLOUT


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp as the config carries it (``Z`` or an offset)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return parsed


def rule_from_config(data: dict) -> Rule:
    """Build a Rule from one entry of the config document's ``rollouts`` list."""
    variants = data.get("variants") or {}
    overrides = {
        str(channel): Override(
            variant=str(item["variant"]), expires_at=parse_time(item.get("expires_at"))
        )
        for channel, item in (data.get("overrides") or {}).items()
    }
    strategy = data.get("strategy", STICKY)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    return Rule(
        key=str(data["key"]),
        enabled=bool(data["enabled"]),
        percentage=int(data["percentage"]),
        simplified_percentage=int(data.get("simplified_percentage", 0)),
        strategy=strategy,
        salt=str(data.get("salt", "")),
        control=str(variants.get("control", "v1")),
        treatment=str(variants.get("treatment", "v2_full")),
        simplified=str(variants.get("simplified", "v2_simplified")),
        overrides=overrides,
        revision=int(data.get("revision", 0)),
    )
