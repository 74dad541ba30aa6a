"""Read side of metrics: what the summary endpoint, the dashboard and the guardrails read.

Stable names other modules build on: ``known_channels``, ``traffic_by_channel``, ``hourly``,
``summary``, ``engagement``, ``review_counts``. Figures come from hourly rollups, with the few
dirty or partial hours aggregated from raw events, so they are exact (see metrics.rollups).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, F, Sum

from . import histogram, rollups
from .models import ConversationStat, ResponseEvent


def known_channels(rollout_key: str, since: datetime) -> list[str]:
    """Distinct channel ids that had a reply of this rollout since ``since``, sorted."""
    return sorted(
        ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=since)
        .values_list("channel_id", flat=True)
        .distinct()
    )


def traffic_by_channel(rollout_key: str, since: datetime) -> dict[str, int]:
    """Replies per channel of this rollout since ``since``."""
    return dict(
        ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=since)
        .values("channel_id")
        .annotate(n=Count("id"))
        .values_list("channel_id", "n")
    )


def _public(figures: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in figures.items() if k not in ("latency_hist",)}
    out["cost_usd"] = float(figures["cost_usd"])
    out["latency_hist"] = {int(k): int(v) for k, v in figures["latency_hist"].items()}
    out["latency_ms"] = histogram.percentiles(figures["latency_hist"])
    n = figures["responses"]
    out["latency_mean_ms"] = round(figures["latency_sum"] / n, 1) if n else None
    return out


def hourly(rollout_key: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per (hour, variant) with replies in [since, until), ordered by hour then variant.

    Each row: ``hour`` (UTC, start of the hour), ``variant``, ``responses``, ``errors``,
    ``errors_by_code`` {code: n}, ``input_tokens``, ``output_tokens``, ``cached_tokens``,
    ``cost_usd`` (float), ``unpriced``, ``cache_hits``, ``cache_known``, ``latency_sum``,
    ``latency_mean_ms``, ``latency_ms`` {p50, p95, p99}, ``latency_hist`` {bucket: count}
    (merge with metrics.histogram to get percentiles over several hours),
    ``reactions_positive``, ``reactions_negative``, ``reactions_neutral``, ``followups``,
    ``corrections``. Hours cut by since/until count only replies inside the range.
    """
    rows = []
    for (hour, variant), figures in sorted(rollups.per_hour(rollout_key, since, until).items()):
        rows.append({"hour": hour, "variant": variant, **_public(figures)})
    return rows


def review_counts(rollout_key: str, since: datetime, until: datetime) -> dict[str, dict[str, int]]:
    """{variant: {"graded", "hallucinations"}} from human reviews of replies sent in
    [since, until): each reviewed reply counted once, by its first saved grade; a hallucination
    is a grade of minor or major (metrics.reviews.services). Variants missing here count as zero."""
    from .reviews import services as reviews

    return reviews.review_counts(rollout_key, since, until)


def review_weekly(rollout_key: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The dashboard's review chart rows (metrics.dashboard.series.review_figures reads this name):
    per (week, variant), ``week`` as the Monday 00:00 UTC datetime, ``graded``, ``hallucinations``,
    ``format_ok``, ``calibrated``, ``consistent``, plus every figure of
    metrics.reviews.services.weekly_review_rates (applicable counts, Wilson interval)."""
    from .reviews import services as reviews

    return reviews.dashboard_weekly(rollout_key, since, until)


def engagement(rollout_key: str, since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Per variant, over conversations that started in [since, until): how many, messages per
    conversation (bot replies + user follow-ups) and average length in minutes. Kept by the
    rollup task, so it may trail the latest events by one rollup run."""
    out: dict[str, dict[str, Any]] = {}
    for row in (
        ConversationStat.objects.filter(
            rollout_key=rollout_key, first_ts__gte=since, first_ts__lt=until
        )
        .values("variant")
        .annotate(
            n=Count("id"),
            messages=Sum(F("responses") + F("followups")),
            replies=Sum("responses"),
            duration=Avg(F("last_ts") - F("first_ts")),
        )
    ):
        n = row["n"]
        duration = row["duration"]
        minutes = (
            duration.total_seconds() / 60
            if hasattr(duration, "total_seconds")
            else (float(duration or 0) / 60_000_000)
        )
        out[row["variant"]] = {
            "conversations": n,
            "messages_per_conversation": round(row["messages"] / n, 2) if n else None,
            "replies_per_conversation": round(row["replies"] / n, 2) if n else None,
            "avg_length_minutes": round(minutes, 1) if n else None,
        }
    return out


def summary(rollout_key: str, since: datetime, until: datetime) -> dict[str, Any]:
    """The body of ``GET /api/v1/rollouts/<key>/summary`` (bot-contract.md, section 2)."""
    totals = rollups.totals_by_variant(rollout_key, since, until)
    reviews = review_counts(rollout_key, since, until)
    conversations = engagement(rollout_key, since, until)
    variants: dict[str, Any] = {}
    for variant in sorted(totals):
        f = totals[variant]
        n = f["responses"]
        review = reviews.get(variant, {})
        variants[variant] = {
            "responses": n,
            "errors": f["errors"],
            "input_tokens": f["input_tokens"],
            "output_tokens": f["output_tokens"],
            "cost_usd": float(round(Decimal(f["cost_usd"]), 6)),
            "latency_ms": histogram.percentiles(f["latency_hist"]),
            "reactions": {"positive": f["reactions_positive"], "negative": f["reactions_negative"]},
            "corrections": f["corrections"],
            "reviews": {
                "graded": int(review.get("graded", 0)),
                "hallucinations": int(review.get("hallucinations", 0)),
            },
            # beyond the contract's keys
            "errors_by_code": dict(sorted(f["errors_by_code"].items())),
            "cached_tokens": f["cached_tokens"],
            "unpriced_responses": f["unpriced"],
            "followups": f["followups"],
            "cache_hit_rate": round(f["cache_hits"] / f["cache_known"], 4)
            if f["cache_known"]
            else None,
            "engagement": conversations.get(variant),
        }
    return {
        "rollout": rollout_key,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "variants": variants,
    }


def served_by_variant(rollout_key: str, since: datetime) -> dict[str, dict[str, int]]:
    """What the bot actually served since ``since``, per variant: ``{"channels", "replies"}``
    (channels that got at least one reply of that variant; a channel moved by a change counts
    under each variant it got). History, not a projection: the console's "Last 24 h"."""
    rows = (
        ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=since)
        .values("variant")
        .annotate(channels=Count("channel_id", distinct=True), replies=Count("id"))
        .values_list("variant", "channels", "replies")
    )
    return {variant: {"channels": c, "replies": r} for variant, c, r in rows}


def latest_response_id() -> int:
    """The id of the newest stored reply (0: none); one index lookup. Readers that cache figures
    key the cache on it, so a new reply makes them read afresh instead of showing stale ones."""
    return ResponseEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
