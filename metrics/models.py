"""Events from the bot, their hourly rollups, prices and the feedback configuration.

Raw events are append-only and idempotent by event id (``POST /api/v1/events`` and the
simulator both go through ``metrics.ingest.intake.record_events``). Charts and summaries read
``HourlyRollup`` rows, kept by ``metrics.rollups`` from the raw rows; a bucket whose raw rows
changed is listed in ``DirtyHour`` until it is recomputed, and readers aggregate those few
buckets on the fly so figures stay exact with the worker down. See docs/metrics.md.

The models of the app's other concepts live in their packages and are imported here, so that
Django finds every model of the ``metrics`` app in ``metrics.models`` (its "organizing models in a
package" pattern; the app label stays ``metrics``): human review (``metrics.reviews.models``:
weekly samples, items, grades; docs/reviews.md) and guardrails (``metrics.guardrails.models``:
rules, states, alerts, the post-deployment decision; docs/guardrails.md).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .guardrails.models import (
    Alert,
    AlertSettings,
    DeploymentDecision,
    GuardrailRule,
    GuardrailState,
    GuardrailTransition,
)
from .reviews.models import ReviewGrade, ReviewItem, ReviewSample

__all__ = [
    # events and rollups (this module)
    "ResponseEvent",
    "ReactionEvent",
    "FollowupEvent",
    "RollupFigures",
    "HourlyRollup",
    "DailyRollup",
    "ChannelCounts",
    "ChannelHourlyRollup",
    "ChannelDailyRollup",
    "DirtyHour",
    "ConversationStat",
    # prices and the feedback configuration (this module)
    "ModelPrice",
    "EmojiSentiment",
    "CorrectionPattern",
    # human review (metrics.reviews.models)
    "ReviewSample",
    "ReviewItem",
    "ReviewGrade",
    # guardrails (metrics.guardrails.models)
    "GuardrailRule",
    "GuardrailState",
    "GuardrailTransition",
    "DeploymentDecision",
    "AlertSettings",
    "Alert",
]

TEXT_LIMIT = 8000  # user_text, response_text and followup text are truncated at this length


class ResponseEvent(models.Model):
    """One bot reply (event type ``response``)."""

    event_id = models.CharField(max_length=64)
    ts = models.DateTimeField()
    hour = models.DateTimeField(help_text="ts truncated to the hour (UTC): the rollup bucket")
    rollout_key = models.CharField(max_length=64)
    variant = models.CharField(max_length=64)
    channel_id = models.CharField(max_length=64)
    message_id = models.CharField(max_length=64)
    conversation_id = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=128)
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cached_tokens = models.BigIntegerField(default=0)
    cache_hit = models.BooleanField(null=True)
    latency_ms = models.FloatField()
    latency_bucket = models.SmallIntegerField(help_text="index in metrics.histogram's buckets")
    # NULL is "no error" (the contract's ``"error": null``); the error rates count NOT NULL.
    error = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    unpriced = models.BooleanField(default=False, help_text="No price row for this model then")
    user_text = models.TextField(blank=True, default="")
    response_text = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Every index costs each ingested reply an index insert, so there are only these: the
        # two unique keys (as constraints: a unique=True CharField would also get a LIKE index
        # on PostgreSQL) and one range index that serves rollup buckets (an hour is a ts range),
        # summaries' edge hours, known channels, traffic by channel and review sampling.
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="resp_event_id_unique"),
            models.UniqueConstraint(fields=["message_id"], name="resp_message_id_unique"),
        ]
        indexes = [
            models.Index(
                fields=["rollout_key", "ts"], include=["channel_id"], name="resp_rollout_ts"
            ),
            models.Index(
                fields=["rollout_key", "conversation_id"],
                condition=~models.Q(conversation_id=""),
                name="resp_conversation",
            ),
        ]

    def __str__(self) -> str:
        return f"response {self.event_id} ({self.rollout_key}/{self.variant})"


class ReactionEvent(models.Model):
    """A user's emoji added to or removed from a bot reply (event type ``reaction``)."""

    class Action(models.TextChoices):
        ADD = "add"
        REMOVE = "remove"

    event_id = models.CharField(max_length=64)
    ts = models.DateTimeField()
    channel_id = models.CharField(max_length=64)
    message_id = models.CharField(max_length=64, help_text="The bot reply reacted to")
    user_id = models.CharField(max_length=64, blank=True, default="")
    emoji = models.CharField(max_length=64)
    action = models.CharField(max_length=8, choices=Action.choices)
    sentiment = models.SmallIntegerField(help_text="+1, -1 or 0, from the map at ingest time")
    attributed = models.BooleanField(default=False, help_text="Its reply has arrived")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="reaction_event_id_unique")
        ]
        indexes = [
            models.Index(fields=["message_id"], name="reaction_message"),
            # the few waiting for their reply: looked up by each new reply at ingest, and by
            # the rollup task (those received in the last 30 days whose reply has arrived)
            models.Index(
                fields=["message_id"],
                condition=models.Q(attributed=False),
                name="reaction_waiting",
            ),
            models.Index(
                fields=["received_at"],
                condition=models.Q(attributed=False),
                name="reaction_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"reaction {self.emoji} {self.action} on {self.message_id}"


class FollowupEvent(models.Model):
    """A user's next message after a bot reply (event type ``followup``)."""

    class Source(models.TextChoices):
        CLIENT = "client", "Sent by the bot (is_correction)"
        PATTERN = "pattern", "Matched a correction pattern"
        NONE = "none", "Not a correction"

    event_id = models.CharField(max_length=64)
    ts = models.DateTimeField()
    channel_id = models.CharField(max_length=64)
    message_id = models.CharField(max_length=64)
    reply_to = models.CharField(max_length=64, help_text="The bot reply followed up")
    text = models.TextField(blank=True, default="")
    is_correction = models.BooleanField(default=False)
    correction_source = models.CharField(max_length=8, choices=Source.choices)
    attributed = models.BooleanField(default=False, help_text="Its reply has arrived")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id"], name="followup_event_id_unique")
        ]
        indexes = [
            models.Index(fields=["reply_to"], name="followup_reply_to"),
            models.Index(
                fields=["reply_to"],
                condition=models.Q(attributed=False),
                name="followup_waiting",
            ),
            models.Index(
                fields=["received_at"],
                condition=models.Q(attributed=False),
                name="followup_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"followup {self.event_id} to {self.reply_to}"


class RollupFigures(models.Model):
    """The exact figures of one rollout's variant over a bucket of time (by the replies' ts).

    Reactions and follow-ups count in the bucket of the reply they point to. ``latency_hist`` is
    a sparse ``{bucket index: count}`` histogram over fixed log-spaced buckets (metrics.histogram),
    so percentiles over any range of buckets come from summing histograms.
    """

    rollout_key = models.CharField(max_length=64)
    variant = models.CharField(max_length=64)
    responses = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    errors_by_code = models.JSONField(default=dict, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0))
    unpriced = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)
    cache_known = models.BigIntegerField(default=0, help_text="Replies that said cache_hit")
    latency_sum = models.FloatField(default=0)
    latency_hist = models.JSONField(default=dict, blank=True)
    reactions_positive = models.BigIntegerField(default=0)
    reactions_negative = models.BigIntegerField(default=0)
    reactions_neutral = models.BigIntegerField(default=0)
    followups = models.BigIntegerField(default=0)
    corrections = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class HourlyRollup(RollupFigures):
    """One rollout's variant over one UTC hour: rebuilt from raw rows when the hour is dirty."""

    hour = models.DateTimeField()
    latency_ranks = models.CharField(  # noqa: DJ001  (null: not derived; "": empty histogram)
        max_length=40,
        null=True,
        blank=True,
        help_text="metrics.histogram.stamped_ranks of latency_hist (p50, p95, p99 bucket "
        "indexes @ computed_at in µs), written with it; null or another stamp: readers decode "
        "the histogram",
    )

    class Meta:
        ordering = ["rollout_key", "hour", "variant"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "hour", "variant"], name="rollup_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_key}/{self.variant} {self.hour:%Y-%m-%d %H}:00"


class DailyRollup(RollupFigures):
    """One rollout's variant over one UTC day: the sum of that day's hourly rows, rebuilt in the
    same transaction as any of them, so that long ranges sum ~30 rows a month, not ~720."""

    day = models.DateTimeField(help_text="00:00 UTC of the day")

    class Meta:
        ordering = ["rollout_key", "day", "variant"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "day", "variant"], name="daily_rollup_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_key}/{self.variant} {self.day:%Y-%m-%d}"


# ChannelCounts' counters (metrics.rollups.CHANNEL_FIELDS), carried by the covering indexes
CHANNEL_COUNTS = (
    "responses",
    "errors",
    "timeouts",
    "cache_hits",
    "cache_known",
    "reactions_positive",
    "reactions_negative",
    "followups",
    "corrections",
)


class ChannelCounts(models.Model):
    """The per-channel counters the hourly and daily per-channel rollups share."""

    responses = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    timeouts = models.IntegerField(default=0)
    cache_hits = models.IntegerField(default=0)
    cache_known = models.IntegerField(default=0)
    reactions_positive = models.IntegerField(default=0)
    reactions_negative = models.IntegerField(default=0)
    followups = models.IntegerField(default=0)
    corrections = models.IntegerField(default=0)
    latency_hist = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True


class ChannelHourlyRollup(ChannelCounts):
    """One channel's replies of one rollout's variant over one UTC hour.

    Whole channels are assigned to a variant, so channels, not replies, are the unit of
    variance for the guardrails' tests and the dashboard's intervals of rates; they read these
    per-channel totals (summed over the window in SQL) instead of the raw events. Rebuilt by
    ``metrics.rollups.recompute_hour`` in the same transaction as the hour's HourlyRollup rows,
    with the same counting rules (reactions and follow-ups in their reply's hour).
    """

    rollout_key = models.CharField(max_length=64)
    hour = models.DateTimeField()
    variant = models.CharField(max_length=64)
    channel_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "hour", "variant", "channel_id"],
                name="channel_rollup_unique_bucket",
            ),
        ]
        indexes = [
            # the per-channel sums of a window's hours read the counters from the index alone
            # on PostgreSQL (see ChannelDailyRollup's channel_daily_counts)
            models.Index(
                fields=["rollout_key", "hour"],
                include=["variant", "channel_id", *CHANNEL_COUNTS],
                name="channel_hourly_counts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_key}/{self.variant}/{self.channel_id} {self.hour:%Y-%m-%d %H}:00"


class ChannelDailyRollup(ChannelCounts):
    """One channel's replies of one rollout's variant over one UTC day: the sum of that day's
    ChannelHourlyRollup rows, rebuilt in the same transaction as any of them, so that a window of
    days reads one row per channel and day instead of 24."""

    rollout_key = models.CharField(max_length=64)
    day = models.DateTimeField(help_text="00:00 UTC of the day")
    variant = models.CharField(max_length=64)
    channel_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "day", "variant", "channel_id"],
                name="channel_daily_unique_bucket",
            ),
        ]
        indexes = [
            # the per-channel sums of a window's whole days (metrics.rollups._channel_sums) read
            # the counters from the index alone on PostgreSQL, not ~1 kB rows with a histogram
            models.Index(
                fields=["rollout_key", "day"],
                include=["variant", "channel_id", *CHANNEL_COUNTS],
                name="channel_daily_counts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_key}/{self.variant}/{self.channel_id} {self.day:%Y-%m-%d}"


class DirtyHour(models.Model):
    """A (rollout, hour) whose raw events changed since its rollup was computed."""

    rollout_key = models.CharField(max_length=64)
    hour = models.DateTimeField()
    marked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rollout_key", "hour"], name="dirty_unique_bucket"),
        ]

    def __str__(self) -> str:
        return f"dirty {self.rollout_key} {self.hour:%Y-%m-%d %H}:00"


class ConversationStat(models.Model):
    """One conversation's length, kept by the rollup task (engagement figures)."""

    rollout_key = models.CharField(max_length=64)
    conversation_id = models.CharField(max_length=64)
    variant = models.CharField(max_length=64, help_text="The variant of its first reply")
    first_ts = models.DateTimeField()
    last_ts = models.DateTimeField()
    responses = models.IntegerField(default=0)
    followups = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "conversation_id"], name="conversation_unique"
            ),
        ]
        indexes = [models.Index(fields=["rollout_key", "first_ts"], name="conversation_first")]

    def __str__(self) -> str:
        return f"conversation {self.conversation_id} ({self.variant})"


class ModelPrice(models.Model):
    """The price of a model from ``valid_from`` on, in dollars per million tokens.

    A reply is priced at ingest with the row valid at its ts, and keeps that cost.
    ``cached_tokens`` are part of ``input_tokens`` and billed at the cached rate.
    """

    model = models.CharField(
        max_length=128, help_text="As the bot sends it, e.g. anthropic/claude-3.5-sonnet"
    )
    valid_from = models.DateTimeField(default=timezone.now)
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    cached_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "valid_from"], name="price_unique_from"),
            models.CheckConstraint(
                condition=models.Q(input_per_million__gte=0)
                & models.Q(output_per_million__gte=0)
                & models.Q(cached_per_million__gte=0),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.valid_from:%Y-%m-%d}: ${self.input_per_million}/M in"


class EmojiSentiment(models.Model):
    """How a reaction emoji counts. Emoji not listed count as neutral."""

    class Sentiment(models.IntegerChoices):
        POSITIVE = 1
        NEUTRAL = 0
        NEGATIVE = -1

    emoji = models.CharField(
        max_length=64, unique=True, help_text="The emoji itself, or a custom emoji's name"
    )
    sentiment = models.SmallIntegerField(choices=Sentiment.choices)

    class Meta:
        ordering = ["-sentiment", "emoji"]

    def __str__(self) -> str:
        return f"{self.emoji}: {self.get_sentiment_display()}"


class CorrectionPattern(models.Model):
    """A regular expression (case-insensitive, searched in the follow-up's text) that marks a
    follow-up as a correction of the reply when the bot did not say."""

    pattern = models.CharField(max_length=300, unique=True)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["pattern"]

    def __str__(self) -> str:
        return self.pattern

    def clean(self) -> None:
        import re

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a valid regular expression: {exc}."}) from None
