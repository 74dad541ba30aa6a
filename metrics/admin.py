"""Admin: prices, the emoji sentiment map and correction patterns are edited here (changes apply
to events ingested afterwards; stored replies keep their cost). Raw events and rollups are
read-only."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.utils import timezone

from rollout.admin import ReadOnlyAdmin

from .models import (
    CorrectionPattern,
    DailyRollup,
    DirtyHour,
    EmojiSentiment,
    FollowupEvent,
    HourlyRollup,
    ModelPrice,
    ReactionEvent,
    ResponseEvent,
)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "valid_from",
        "input_per_million",
        "output_per_million",
        "cached_per_million",
        "note",
    )
    list_filter = ("model",)
    search_fields = ("model",)
    date_hierarchy = "valid_from"

    def changelist_view(self, request, extra_context=None):
        since = timezone.now() - timedelta(days=30)
        unpriced = list(
            ResponseEvent.objects.filter(unpriced=True, ts__gte=since)
            .values_list("model", flat=True)
            .distinct()[:20]
        )
        if unpriced:
            messages.warning(
                request,
                "Replies of the last 30 days from models without a price (their cost counts as "
                f"$0): {', '.join(sorted(unpriced))}. Add a row valid from before those replies; "
                "already stored replies keep their cost.",
            )
        return super().changelist_view(request, extra_context)


@admin.register(EmojiSentiment)
class EmojiSentimentAdmin(admin.ModelAdmin):
    list_display = ("emoji", "sentiment")
    list_editable = ("sentiment",)
    list_filter = ("sentiment",)
    search_fields = ("emoji",)


@admin.register(CorrectionPattern)
class CorrectionPatternAdmin(admin.ModelAdmin):
    list_display = ("pattern", "enabled", "note")
    list_editable = ("enabled",)
    search_fields = ("pattern", "note")


@admin.register(ResponseEvent)
class ResponseEventAdmin(ReadOnlyAdmin):
    list_display = (
        "event_id",
        "ts",
        "rollout_key",
        "variant",
        "channel_id",
        "model",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "error",
        "cost_usd",
        "unpriced",
    )
    list_filter = ("rollout_key", "variant", "unpriced", "error")
    search_fields = ("event_id", "message_id", "channel_id", "conversation_id")
    date_hierarchy = "ts"
    show_full_result_count = False


@admin.register(ReactionEvent)
class ReactionEventAdmin(ReadOnlyAdmin):
    list_display = (
        "event_id",
        "ts",
        "message_id",
        "user_id",
        "emoji",
        "action",
        "sentiment",
        "attributed",
    )
    list_filter = ("action", "sentiment", "attributed")
    search_fields = ("event_id", "message_id")
    show_full_result_count = False


@admin.register(FollowupEvent)
class FollowupEventAdmin(ReadOnlyAdmin):
    list_display = (
        "event_id",
        "ts",
        "reply_to",
        "is_correction",
        "correction_source",
        "attributed",
        "text",
    )
    list_filter = ("is_correction", "correction_source", "attributed")
    search_fields = ("event_id", "reply_to", "text")
    show_full_result_count = False


# The counters an hourly and a daily rollup row share, as the admin lists them.
ROLLUP_COLUMNS = (
    "responses",
    "errors",
    "input_tokens",
    "cost_usd",
    "reactions_positive",
    "reactions_negative",
    "corrections",
    "unpriced",
    "computed_at",
)


@admin.register(HourlyRollup)
class HourlyRollupAdmin(ReadOnlyAdmin):
    list_display = ("rollout_key", "variant", "hour", *ROLLUP_COLUMNS)
    list_filter = ("rollout_key", "variant")
    date_hierarchy = "hour"


@admin.register(DailyRollup)
class DailyRollupAdmin(ReadOnlyAdmin):
    list_display = ("rollout_key", "variant", "day", *ROLLUP_COLUMNS)
    list_filter = ("rollout_key", "variant")
    date_hierarchy = "day"


@admin.register(DirtyHour)
class DirtyHourAdmin(ReadOnlyAdmin):
    list_display = ("rollout_key", "hour", "marked_at")
