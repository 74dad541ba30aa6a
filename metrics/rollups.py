"""Hourly rollups kept from the raw events: exact, idempotent, harmless to re-run.

A bucket is one (rollout, UTC hour). Ingest marks the buckets it touched in ``DirtyHour``;
``recompute_hour`` rebuilds a bucket's ``HourlyRollup`` rows from the raw rows (upsert) and
clears its mark in the same transaction. ``aggregate`` is the single place where raw rows become
figures: the rollup task uses it, and readers use it for the few dirty or partial hours.

Concurrency on PostgreSQL: an ingest takes a *shared* transaction-level advisory lock per bucket
before it marks the bucket dirty; the recompute takes the *exclusive* one. So a recompute waits
for ingests in flight on its bucket and then reads all of their rows, and an ingest that starts
meanwhile waits and marks the bucket dirty again after it. SQLite serialises writers instead.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from . import histogram
from .models import (
    ChannelDailyRollup,
    ChannelHourlyRollup,
    ConversationStat,
    DailyRollup,
    DirtyHour,
    FollowupEvent,
    HourlyRollup,
    ReactionEvent,
    ResponseEvent,
    RollupFigures,
)

logger = logging.getLogger("selcontrol.metrics")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PENDING_WINDOW = timedelta(days=30)  # unattributed reactions/follow-ups older than this are left
COUNT_FIELDS = (
    "responses",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "unpriced",
    "cache_hits",
    "cache_known",
    "reactions_positive",
    "reactions_negative",
    "reactions_neutral",
    "followups",
    "corrections",
)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def hour_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def lock_key(rollout_key: str, hour: datetime) -> int:
    """A stable signed 64-bit advisory-lock key for a bucket."""
    digest = hashlib.sha256(f"metrics:{rollout_key}:{hour_of(hour).isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_buckets_shared(buckets: set[tuple[str, datetime]]) -> None:
    """Called by ingest, in its transaction, before it marks buckets dirty (PostgreSQL only)."""
    if not buckets or not is_postgres():
        return
    keys = sorted({lock_key(r, h) for r, h in buckets})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(%s::bigint[]) AS k",
            [keys],
        )


def mark_dirty(buckets: set[tuple[str, datetime]]) -> None:
    """Mark buckets dirty; the caller holds their shared locks (see lock_buckets_shared)."""
    if not buckets:
        return
    rows = sorted((r, hour_of(h)) for r, h in buckets)
    now = timezone.now()
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO metrics_dirtyhour (rollout_key, hour, marked_at) "
                "SELECT r, h, %s FROM unnest(%s::text[], %s::timestamptz[]) AS t(r, h) "
                "ON CONFLICT DO NOTHING",
                [now, [r for r, _ in rows], [h for _, h in rows]],
            )
    else:
        DirtyHour.objects.bulk_create(
            [DirtyHour(rollout_key=r, hour=h, marked_at=now) for r, h in rows],
            ignore_conflicts=True,
        )


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (as PostgreSQL's extract(epoch ...) * 1000000)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def empty_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {name: 0 for name in COUNT_FIELDS}
    figures.update(
        {"cost_usd": Decimal(0), "latency_sum": 0.0, "latency_hist": {}, "errors_by_code": {}}
    )
    return figures


def add_figures(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    for name in COUNT_FIELDS:
        total[name] += part[name]
    total["cost_usd"] += Decimal(part["cost_usd"])
    total["latency_sum"] += part["latency_sum"]
    total["latency_hist"] = histogram.merge([total["latency_hist"], part["latency_hist"]])
    for code, n in part["errors_by_code"].items():
        total["errors_by_code"][code] = total["errors_by_code"].get(code, 0) + n
    return total


def figures_of_rollup(row: RollupFigures) -> dict[str, Any]:
    figures = {name: getattr(row, name) for name in COUNT_FIELDS}
    figures.update(
        {
            "cost_usd": row.cost_usd,
            "latency_sum": row.latency_sum,
            "latency_hist": {int(k): v for k, v in row.latency_hist.items()},
            "errors_by_code": dict(row.errors_by_code),
        }
    )
    return figures


def _range_of(
    hour: datetime, ts_from: datetime | None, ts_to: datetime | None
) -> tuple[datetime, datetime]:
    """The ts range [lo, hi) of a bucket, optionally narrowed to [ts_from, ts_to). Raw replies
    are always selected by ts range (the (rollout_key, ts) index): an hour is a ts range."""
    lo = hour_of(hour)
    hi = lo + HOUR
    if ts_from is not None and ts_from > lo:
        lo = ts_from
    if ts_to is not None and ts_to < hi:
        hi = ts_to
    return lo, hi


def aggregate(
    rollout_key: str,
    hour: datetime,
    ts_from: datetime | None = None,
    ts_to: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """The exact figures per variant of one bucket, from raw rows; optionally only the replies
    with ``ts_from <= ts < ts_to`` (for partial hours at the edges of a range)."""
    lo, hi = _range_of(hour, ts_from, ts_to)
    if lo >= hi:
        return {}
    if is_postgres():
        return _aggregate_pg(rollout_key, lo, hi)
    return _aggregate_portable(rollout_key, lo, hi)


# The hour's replies' reactions (each reply's, latest event first per user and emoji) and
# follow-ups, looked up per reply; what the statements below join (see the comment above them).
_REACTIONS_LATEST_FIRST = """  FROM r CROSS JOIN LATERAL (
    SELECT message_id, user_id, emoji, ts, action, sentiment, id FROM metrics_reactionevent
    WHERE message_id = r.message_id OFFSET 0
  ) AS x
  ORDER BY x.message_id, x.user_id, x.emoji, x.ts DESC, (x.action = 'remove') DESC, x.id DESC"""
_FOLLOWUPS = """FROM r CROSS JOIN LATERAL (
  SELECT is_correction FROM metrics_followupevent WHERE reply_to = r.message_id OFFSET 0
) AS f"""

# One statement, one pass over the range's replies (materialised once): their figures grouped by
# (variant, latency bucket, error code), which Python folds into totals, the histogram and the
# error counts; then the reactions (the latest event per reply, user and emoji; counted when it
# is an add, a remove at the same instant winning) and the follow-ups of those replies. Those
# two are looked up per reply through their indexes (reaction_message, followup_reply_to): a
# LATERAL subquery with OFFSET 0 is never flattened into a join, so the planner cannot choose to
# hash the whole reaction or follow-up table instead. It did, for a 13,000-reply hour beside
# 800,000 follow-ups: a sequential scan of all of them, 235 of the statement's 310 ms (the
# dashboard's dirty hour in bench/dashboard_render.py); looked up per reply, ~13 ms. The same
# holds for the two per-channel statements below.
_AGGREGATE_SQL = f"""
WITH r AS MATERIALIZED (
  SELECT message_id, variant, latency_bucket, error, input_tokens, output_tokens, cached_tokens,
         cost_usd, unpriced, cache_hit, latency_ms
  FROM metrics_responseevent
  WHERE rollout_key = %(key)s AND ts >= %(lo)s AND ts < %(hi)s
)
SELECT 'r', variant, latency_bucket::int, error, count(*), count(*) FILTER (WHERE unpriced),
       count(*) FILTER (WHERE cache_hit), count(cache_hit), sum(input_tokens)::bigint,
       sum(output_tokens)::bigint, sum(cached_tokens)::bigint, sum(cost_usd), sum(latency_ms)
FROM r GROUP BY variant, latency_bucket, error
UNION ALL
SELECT 'x', variant, sentiment::int, NULL, count(*), 0, 0, 0, 0, 0, 0, 0, 0
FROM (
  SELECT DISTINCT ON (x.message_id, x.user_id, x.emoji) r.variant, x.action, x.sentiment
{_REACTIONS_LATEST_FIRST}
) AS latest
WHERE action = 'add' GROUP BY variant, sentiment
UNION ALL
SELECT 'f', r.variant, NULL, NULL, count(*), count(*) FILTER (WHERE f.is_correction),
  0, 0, 0, 0, 0, 0, 0
{_FOLLOWUPS} GROUP BY r.variant
"""
_SENTIMENT_FIELD = {1: "reactions_positive", -1: "reactions_negative"}


def _aggregate_pg(rollout_key: str, lo: datetime, hi: datetime) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(_AGGREGATE_SQL, {"key": rollout_key, "lo": lo, "hi": hi})
        rows = cursor.fetchall()
    return _fold_aggregate_rows(rows)


def _fold_aggregate_rows(rows) -> dict[str, dict[str, Any]]:
    """The figures per variant from _AGGREGATE_SQL's rows."""
    result: dict[str, dict[str, Any]] = {}
    for kind, variant, key, error, n, a, hits, known, n_in, n_out, n_cached, cost, latency in rows:
        if kind == "r":
            f = result.get(variant)
            if f is None:
                f = result[variant] = empty_figures()
            f["responses"] += n
            f["unpriced"] += a
            f["cache_hits"] += hits
            f["cache_known"] += known
            f["input_tokens"] += n_in
            f["output_tokens"] += n_out
            f["cached_tokens"] += n_cached
            f["cost_usd"] += Decimal(cost)
            f["latency_sum"] += latency
            hist = f["latency_hist"]
            hist[key] = hist.get(key, 0) + n
            if error is not None:
                f["errors"] += n
                f["errors_by_code"][error] = f["errors_by_code"].get(error, 0) + n
    for kind, variant, key, _error, n, a, *_ in rows:
        if kind == "r" or variant not in result:
            continue
        if kind == "x":
            result[variant][_SENTIMENT_FIELD.get(key, "reactions_neutral")] += n
        else:
            result[variant]["followups"] = n
            result[variant]["corrections"] = a
    return result


def _aggregate_portable(rollout_key: str, lo: datetime, hi: datetime) -> dict[str, dict[str, Any]]:
    """The same as _aggregate_pg with the ORM and Python (SQLite has no DISTINCT ON)."""
    replies = ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=lo, ts__lt=hi)
    result: dict[str, dict[str, Any]] = {}
    for row in replies.values("variant").annotate(
        n=Count("id"),
        n_errors=Count("id", filter=Q(error__isnull=False)),
        n_input=Sum("input_tokens"),
        n_output=Sum("output_tokens"),
        n_cached=Sum("cached_tokens"),
        n_cost=Sum("cost_usd"),
        n_unpriced=Count("id", filter=Q(unpriced=True)),
        n_hits=Count("id", filter=Q(cache_hit=True)),
        n_known=Count("id", filter=Q(cache_hit__isnull=False)),
        n_latency=Sum("latency_ms"),
    ):
        figures = empty_figures()
        figures.update(
            responses=row["n"],
            errors=row["n_errors"],
            input_tokens=row["n_input"] or 0,
            output_tokens=row["n_output"] or 0,
            cached_tokens=row["n_cached"] or 0,
            cost_usd=Decimal(row["n_cost"] or 0),
            unpriced=row["n_unpriced"],
            cache_hits=row["n_hits"],
            cache_known=row["n_known"],
            latency_sum=float(row["n_latency"] or 0),
        )
        result[row["variant"]] = figures
    if not result:
        return result

    for row in replies.values("variant", "latency_bucket").annotate(n=Count("id")):
        result[row["variant"]]["latency_hist"][int(row["latency_bucket"])] = row["n"]
    for row in (
        replies.filter(error__isnull=False).values("variant", "error").annotate(n=Count("id"))
    ):
        result[row["variant"]]["errors_by_code"][row["error"]] = row["n"]
    _feedback_portable(result, replies)
    return result


def _feedback_portable(result, replies) -> None:
    """The reactions and follow-ups part of _AGGREGATE_SQL, with the ORM and Python."""
    reply_variant = Subquery(
        ResponseEvent.objects.filter(message_id=OuterRef("message_id")).values("variant")[:1]
    )
    reactions = (
        ReactionEvent.objects.filter(message_id__in=replies.values("message_id"))
        .annotate(reply_variant=reply_variant)
        .values_list(
            "reply_variant", "message_id", "user_id", "emoji", "action", "sentiment", "ts", "id"
        )
    )
    # A user's emoji on a reply counts when its latest event is an add (a remove at the same
    # instant wins), so a removal undoes its add in whatever order the two arrive.
    latest: dict[tuple, tuple] = {}
    for variant, message_id, user_id, emoji, action, sentiment, ts, pk in reactions:
        order = (ts, action == ReactionEvent.Action.REMOVE, pk)
        key = (message_id, user_id, emoji)
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, variant, action, sentiment)
    for _order, variant, action, sentiment in latest.values():
        if action != ReactionEvent.Action.ADD or variant not in result:
            continue
        name = {1: "reactions_positive", -1: "reactions_negative"}.get(
            sentiment, "reactions_neutral"
        )
        result[variant][name] += 1

    followup_variant = Subquery(
        ResponseEvent.objects.filter(message_id=OuterRef("reply_to")).values("variant")[:1]
    )
    for row in (
        FollowupEvent.objects.filter(reply_to__in=replies.values("message_id"))
        .annotate(reply_variant=followup_variant)
        .values("reply_variant")
        .annotate(n=Count("id"), n_corr=Count("id", filter=Q(is_correction=True)))
    ):
        if row["reply_variant"] in result:
            result[row["reply_variant"]]["followups"] = row["n"]
            result[row["reply_variant"]]["corrections"] = row["n_corr"]


def _lock_exclusive(rollout_key: str, hour: datetime) -> None:
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(rollout_key, hour)])


def recompute_hour(rollout_key: str, hour: datetime, *, only_if_dirty: bool = False) -> bool:
    """Rebuild one bucket's rollup rows from raw events and clear its dirty mark, atomically.

    Returns False when ``only_if_dirty`` and another worker has already done it."""
    hour = hour_of(hour)
    with transaction.atomic():
        _lock_exclusive(rollout_key, hour)
        deleted, _ = DirtyHour.objects.filter(rollout_key=rollout_key, hour=hour).delete()
        if only_if_dirty and not deleted:
            return False
        _replace_rollups(HourlyRollup, "hour", rollout_key, hour, aggregate(rollout_key, hour))
        _replace_channel_rollups(rollout_key, hour, channel_aggregate(rollout_key, hour))
        _recompute_day(rollout_key, day_of(hour))
        _update_conversations(rollout_key, hour)
    return True


def _recompute_day(rollout_key: str, day: datetime) -> None:
    """Rebuild a day's DailyRollup rows as the sum of its hourly rows, in the caller's
    transaction. The day's own exclusive lock (taken after the hour's, never before it) orders
    two workers recomputing hours of one day: the second sums after the first has committed."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s)", [lock_key(f"{rollout_key}#day", day)]
            )
    totals: dict[str, dict[str, Any]] = defaultdict(empty_figures)
    for row in HourlyRollup.objects.filter(
        rollout_key=rollout_key, hour__gte=day, hour__lt=day + DAY
    ):
        add_figures(totals[row.variant], figures_of_rollup(row))
    _replace_rollups(DailyRollup, "day", rollout_key, day, totals)
    _recompute_channel_day(rollout_key, day)


def _replace_rollups(model, bucket: str, rollout_key: str, start: datetime, figures) -> None:
    """Make one bucket's rollup rows (HourlyRollup by "hour", DailyRollup by "day") exactly
    these figures per variant: upsert them, delete the variants no longer present."""
    now = timezone.now()
    rows = [
        model(rollout_key=rollout_key, variant=variant, computed_at=now, **{bucket: start}, **f)
        for variant, f in figures.items()
    ]
    ranked = model is HourlyRollup  # its percentiles' buckets are stored beside the histogram
    for row in rows:
        row.latency_hist = {str(k): v for k, v in row.latency_hist.items()}
        if ranked:
            row.latency_ranks = histogram.stamped_ranks(row.latency_hist, epoch_micros(now))
    if rows:
        model.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["rollout_key", bucket, "variant"],
            update_fields=[
                *COUNT_FIELDS,
                "cost_usd",
                "latency_sum",
                "latency_hist",
                "errors_by_code",
                "computed_at",
                *(["latency_ranks"] if ranked else []),
            ],
        )
    model.objects.filter(rollout_key=rollout_key, **{bucket: start}).exclude(
        variant__in=list(figures)
    ).delete()


def _update_conversations(rollout_key: str, hour: datetime) -> None:
    """Recompute the conversations that have a reply in this bucket (engagement figures)."""
    ids = list(
        ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=hour, ts__lt=hour + HOUR)
        .exclude(conversation_id="")
        .values_list("conversation_id", flat=True)
        .distinct()
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        replies = ResponseEvent.objects.filter(rollout_key=rollout_key, conversation_id__in=chunk)
        stats: dict[str, dict[str, Any]] = {}
        for row in replies.values("conversation_id", "variant").annotate(
            first=Min("ts"), last=Max("ts"), n=Count("id")
        ):
            stat = stats.setdefault(
                row["conversation_id"],
                {
                    "first": row["first"],
                    "last": row["last"],
                    "n": 0,
                    "variant": row["variant"],
                    "f": 0,
                },
            )
            if row["first"] < stat["first"]:
                stat["first"], stat["variant"] = row["first"], row["variant"]
            stat["last"] = max(stat["last"], row["last"])
            stat["n"] += row["n"]
        conversation = Subquery(
            ResponseEvent.objects.filter(message_id=OuterRef("reply_to")).values("conversation_id")[
                :1
            ]
        )
        for row in (
            FollowupEvent.objects.filter(reply_to__in=replies.values("message_id"))
            .annotate(conversation=conversation)
            .values("conversation")
            .annotate(n=Count("id"), last=Max("ts"))
        ):
            followed = stats.get(row["conversation"])
            if followed is not None:
                followed["f"] = row["n"]
                followed["last"] = max(followed["last"], row["last"])
        ConversationStat.objects.bulk_create(
            [
                ConversationStat(
                    rollout_key=rollout_key,
                    conversation_id=cid,
                    variant=s["variant"],
                    first_ts=s["first"],
                    last_ts=s["last"],
                    responses=s["n"],
                    followups=s["f"],
                )
                for cid, s in stats.items()
            ],
            update_conflicts=True,
            unique_fields=["rollout_key", "conversation_id"],
            update_fields=["variant", "first_ts", "last_ts", "responses", "followups"],
        )


def resolvable_pending() -> dict[str, list[tuple[int, str, datetime]]]:
    """Unattributed reactions and follow-ups whose reply has arrived since: {"reaction": [(id,
    rollout_key, hour)], "followup": [...]}. Normally empty; a reply and its reaction ingested by
    two concurrent requests can leave one here, which the next rollup run resolves."""
    cutoff = timezone.now() - PENDING_WINDOW
    out: dict[str, list[tuple[int, str, datetime]]] = {}
    for name, model, field in (
        ("reaction", ReactionEvent, "message_id"),
        ("followup", FollowupEvent, "reply_to"),
    ):
        reply = ResponseEvent.objects.filter(message_id=OuterRef(field))
        out[name] = [
            (pk, rk, hr)
            for pk, rk, hr in model.objects.filter(attributed=False, received_at__gte=cutoff)
            .annotate(
                rk=Subquery(reply.values("rollout_key")[:1]), hr=Subquery(reply.values("hour")[:1])
            )
            .filter(rk__isnull=False)
            .values_list("id", "rk", "hr")
        ]
    return out


def attribute_pending() -> int:
    """Attribute resolvable pending reactions/follow-ups: mark their replies' buckets dirty."""
    with transaction.atomic():
        pending = resolvable_pending()
        buckets = {(rk, hr) for rows in pending.values() for _, rk, hr in rows}
        if not buckets:
            return 0
        lock_buckets_shared(buckets)
        mark_dirty(buckets)
        ReactionEvent.objects.filter(pk__in=[pk for pk, _, _ in pending["reaction"]]).update(
            attributed=True
        )
        FollowupEvent.objects.filter(pk__in=[pk for pk, _, _ in pending["followup"]]).update(
            attributed=True
        )
    return sum(len(rows) for rows in pending.values())


def catch_up(*, time_budget: float = 50.0) -> dict[str, int]:
    """Attribute pending events, then recompute dirty buckets (oldest first) until none is left or
    the time budget is spent. Idempotent; safe to run from several workers at once."""
    started = time.monotonic()
    attributed = attribute_pending()
    done = skipped = 0
    seen: set[tuple[str, datetime]] = set()
    while time.monotonic() - started < time_budget:
        batch = [
            (r, h)
            for r, h in DirtyHour.objects.order_by("hour", "rollout_key").values_list(
                "rollout_key", "hour"
            )[:200]
            if (r, h) not in seen
        ]
        if not batch:
            break
        for rollout_key, hour in batch:
            seen.add((rollout_key, hour))
            try:
                if recompute_hour(rollout_key, hour, only_if_dirty=True):
                    done += 1
            except OperationalError:  # lock_timeout under heavy ingest: leave it dirty
                logger.warning("rollup of %s %s skipped: bucket busy", rollout_key, hour)
                skipped += 1
            if time.monotonic() - started >= time_budget:
                break
    remaining = DirtyHour.objects.count()
    return {
        "attributed": attributed,
        "recomputed": done,
        "skipped": skipped,
        "remaining": remaining,
    }


def mark_all_dirty(rollout_key: str | None = None) -> int:
    """Mark every hour that has replies dirty (to rebuild everything, e.g. after a restore)."""
    replies = ResponseEvent.objects.all()
    if rollout_key:
        replies = replies.filter(rollout_key=rollout_key)
    buckets = set(replies.values_list("rollout_key", "hour").distinct())
    # hours that have rollups but no more replies get cleaned up too
    rolled_up = HourlyRollup.objects.all()
    if rollout_key:
        rolled_up = rolled_up.filter(rollout_key=rollout_key)
    buckets |= set(rolled_up.values_list("rollout_key", "hour").distinct())
    with transaction.atomic():
        lock_buckets_shared(buckets)
        mark_dirty(buckets)
    return len(buckets)


def live_hours(rollout_key: str, since: datetime, until: datetime) -> set[datetime]:
    """Hours of [since, until) whose rollups are not to be trusted right now: dirty ones, and
    the replies' hours of pending reactions/follow-ups that could be attributed."""
    hours = set(
        DirtyHour.objects.filter(
            rollout_key=rollout_key, hour__gte=hour_of(since), hour__lt=until
        ).values_list("hour", flat=True)
    )
    for rows in resolvable_pending().values():
        hours |= {hr for _, rk, hr in rows if rk == rollout_key and hour_of(since) <= hr < until}
    return hours


def per_hour(
    rollout_key: str, since: datetime, until: datetime
) -> dict[tuple[datetime, str], dict[str, Any]]:
    """Exact figures per (hour, variant) for replies with since <= ts < until: rollups for clean
    whole hours, raw aggregation for dirty hours and the partial hours at both ends. On
    PostgreSQL all of it is read from one snapshot (REPEATABLE READ)."""
    if is_postgres() and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _per_hour(rollout_key, since, until)
    return _per_hour(rollout_key, since, until)


def _per_hour(
    rollout_key: str, since: datetime, until: datetime
) -> dict[tuple[datetime, str], dict[str, Any]]:
    first = hour_of(since)
    live = live_hours(rollout_key, since, until)
    partial = {first} if since > first else set()
    last = hour_of(until)
    if until > last:
        partial.add(last)
    out: dict[tuple[datetime, str], dict[str, Any]] = {}
    for row in HourlyRollup.objects.filter(
        rollout_key=rollout_key, hour__gte=first, hour__lt=until
    ):
        if row.hour in live or row.hour in partial:
            continue
        out[(row.hour, row.variant)] = figures_of_rollup(row)
    for hour in sorted(live | partial):
        ts_from = since if hour < since else None
        ts_to = until if hour + HOUR > until else None
        for variant, figures in aggregate(rollout_key, hour, ts_from, ts_to).items():
            out[(hour, variant)] = figures
    return out


def totals_by_variant(
    rollout_key: str, since: datetime, until: datetime
) -> dict[str, dict[str, Any]]:
    """Exact figures per variant for replies with since <= ts < until (see per_hour). On
    PostgreSQL the clean hours are summed in SQL (histograms and error codes merged with
    jsonb_each_text), from one REPEATABLE READ snapshot."""
    if is_postgres() and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _totals(rollout_key, since, until)
    return _totals(rollout_key, since, until)


def _totals(rollout_key: str, since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    first = hour_of(since)
    dirty = live_hours(rollout_key, since, until)
    skip = set(dirty)
    if since > first:
        skip.add(first)
    if until > hour_of(until):
        skip.add(hour_of(until))
    days, segments = _rollup_parts(first, until, skip)
    totals: dict[str, dict[str, Any]] = defaultdict(empty_figures)
    if is_postgres():
        _sum_rollups_pg(totals, rollout_key, days, segments, sorted(skip))
    else:
        for day_row in DailyRollup.objects.filter(rollout_key=rollout_key, day__in=days):
            add_figures(totals[day_row.variant], figures_of_rollup(day_row))
        for start, end in segments:
            rows = HourlyRollup.objects.filter(
                rollout_key=rollout_key, hour__gte=start, hour__lt=end
            )
            for row in rows.exclude(hour__in=sorted(skip)):
                add_figures(totals[row.variant], figures_of_rollup(row))
    for hour in sorted(skip):
        ts_from = since if hour < since else None
        ts_to = until if hour + HOUR > until else None
        for variant, figures in _edge_or_live(rollout_key, hour, ts_from, ts_to, dirty).items():
            add_figures(totals[variant], figures)
    return dict(totals)


def _rollup_parts(
    first: datetime, until: datetime, skip: set[datetime]
) -> tuple[list[datetime], list[tuple[datetime, datetime]]]:
    """How to read the clean whole hours of [first, until) from rollups: the days that lie
    wholly inside with no hour to skip (their DailyRollup rows), and the hour ranges [a, b)
    around them (HourlyRollup rows, minus the skipped hours)."""
    skipped_days = {day_of(hour) for hour in skip}
    days = []
    day = day_of(first)
    if day < first:
        day += DAY
    while day + DAY <= until:
        if day not in skipped_days:
            days.append(day)
        day += DAY
    segments = []
    cursor = first
    for day in days:
        if day > cursor:
            segments.append((cursor, day))
        cursor = day + DAY
    if cursor < until:
        segments.append((cursor, until))
    return days, segments


def _edge_or_live(rollout_key, hour, ts_from, ts_to, dirty: set) -> dict[str, dict[str, Any]]:
    """Raw figures of a dirty hour, or of the part of a clean hour inside the range. Every figure
    is a sum over replies, so when the range keeps most of a clean hour cut on one side, it is
    cheaper to take the hour's rollup minus the few replies left out."""
    one_side = (ts_from is None) != (ts_to is None)
    kept = (
        (hour + HOUR - ts_from)
        if ts_from is not None
        else (ts_to - hour)
        if ts_to is not None
        else HOUR
    )
    if hour in dirty or not one_side or kept <= HOUR / 2:
        return aggregate(rollout_key, hour, ts_from, ts_to)
    whole = {
        row.variant: figures_of_rollup(row)
        for row in HourlyRollup.objects.filter(rollout_key=rollout_key, hour=hour)
    }
    left_out = aggregate(rollout_key, hour, ts_to, ts_from)  # the complement of the kept part
    for variant, figures in left_out.items():
        sub_figures(whole[variant], figures)
    return {v: f for v, f in whole.items() if f["responses"]}


def sub_figures(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    for name in COUNT_FIELDS:
        total[name] -= part[name]
    total["cost_usd"] -= Decimal(part["cost_usd"])
    total["latency_sum"] -= part["latency_sum"]
    for key in ("latency_hist", "errors_by_code"):
        merged = dict(total[key])
        for k, n in part[key].items():
            merged[k] = merged.get(k, 0) - n
        total[key] = {k: n for k, n in merged.items() if n}
    return total


def _sum_rollups_pg(
    totals, rollout_key: str, days: list[datetime], segments, skip: list[datetime]
) -> None:
    """Sum the day rows and the hour rows of the ranges (skipped hours left out) in SQL,
    histograms and error codes merged with jsonb_each_text."""
    parts: list[str] = []
    params: list[str | datetime | list[datetime]] = []
    if days:
        parts.append(
            "SELECT {columns} FROM metrics_dailyrollup WHERE rollout_key = %s AND day = "
            "ANY(%s::timestamptz[])"
        )
        params += [rollout_key, days]
    if segments:
        ranges = " OR ".join(["(hour >= %s AND hour < %s)"] * len(segments))
        parts.append(
            "SELECT {columns} FROM metrics_hourlyrollup WHERE rollout_key = %s "
            f"AND NOT (hour = ANY(%s::timestamptz[])) AND ({ranges})"
        )
        params += [rollout_key, skip, *(t for segment in segments for t in segment)]
    if not parts:
        return
    union = " UNION ALL ".join(parts)
    names = [*COUNT_FIELDS, "cost_usd", "latency_sum"]
    sums = ", ".join(f"sum({name})" for name in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT variant, {sums} FROM ({union.format(columns='variant, ' + ', '.join(names))}) "
            "AS r "
            "GROUP BY variant",
            params,
        )
        for variant, *values in cursor.fetchall():
            figures = totals[variant]
            for name, value in zip(COUNT_FIELDS, values, strict=False):
                figures[name] += int(value or 0)
            figures["cost_usd"] += Decimal(values[-2] or 0)
            figures["latency_sum"] += float(values[-1] or 0)
        for column in ("latency_hist", "errors_by_code"):
            cursor.execute(
                f"SELECT variant, e.key, sum(e.value::bigint) "
                f"FROM ({union.format(columns='variant, ' + column + ' AS j')}) AS r, "
                "jsonb_each_text(r.j) AS e GROUP BY variant, e.key",
                params,
            )
            for variant, k, n in cursor.fetchall():
                bucket = totals[variant][column]
                k = int(k) if column == "latency_hist" else k
                bucket[k] = bucket.get(k, 0) + int(n)


# --- per-channel totals ---------------------------------------------------------------------
# Whole channels are assigned to a variant, so the guardrails' tests and the dashboard's
# intervals of rates take channels as the unit of variance: they need each channel's totals
# over a window, kept per (rollout, hour, variant, channel) with the same counting rules.

CHANNEL_FIELDS = (
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

_CHANNEL_SQL = f"""
WITH r AS MATERIALIZED (
  SELECT message_id, variant, channel_id, latency_bucket, error, cache_hit
  FROM metrics_responseevent
  WHERE rollout_key = %(key)s AND ts >= %(lo)s AND ts < %(hi)s
)
SELECT 'r', variant, channel_id, latency_bucket::int, count(*),
       count(*) FILTER (WHERE error IS NOT NULL), count(*) FILTER (WHERE error = 'timeout'),
       count(*) FILTER (WHERE cache_hit), count(cache_hit)
FROM r GROUP BY variant, channel_id, latency_bucket
UNION ALL
SELECT 'x', variant, channel_id, sentiment::int, count(*), 0, 0, 0, 0
FROM (
  SELECT DISTINCT ON (x.message_id, x.user_id, x.emoji) r.variant, r.channel_id, x.action,
         x.sentiment
{_REACTIONS_LATEST_FIRST}
) AS latest
WHERE action = 'add' AND sentiment <> 0 GROUP BY variant, channel_id, sentiment
UNION ALL
SELECT 'f', r.variant, r.channel_id, NULL, count(*), count(*) FILTER (WHERE f.is_correction),
       0, 0, 0
{_FOLLOWUPS} GROUP BY r.variant, r.channel_id
"""


def empty_channel() -> dict[str, Any]:
    return {**{name: 0 for name in CHANNEL_FIELDS}, "latency_hist": {}}


# _AGGREGATE_SQL and the per-channel counts of _CHANNEL_SQL (no per-channel histogram) in one
# statement, one pass over the bucket's replies: what the dashboard needs of a dirty hour (its
# figures per variant, and per channel for the comparison's intervals).
_AGGREGATE_CHANNELS_SQL = f"""
WITH r AS MATERIALIZED (
  SELECT message_id, variant, channel_id, latency_bucket, error, input_tokens, output_tokens,
         cached_tokens, cost_usd, unpriced, cache_hit, latency_ms
  FROM metrics_responseevent
  WHERE rollout_key = %(key)s AND ts >= %(lo)s AND ts < %(hi)s
)
SELECT 'r', variant, NULL::varchar, latency_bucket::int, error, count(*),
       count(*) FILTER (WHERE unpriced), count(*) FILTER (WHERE cache_hit), count(cache_hit),
       sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(cached_tokens)::bigint,
       sum(cost_usd), sum(latency_ms)
FROM r GROUP BY variant, latency_bucket, error
UNION ALL
SELECT 'c', variant, channel_id, NULL, NULL, count(*), count(*) FILTER (WHERE error IS NOT NULL),
       count(*) FILTER (WHERE cache_hit), count(cache_hit),
       count(*) FILTER (WHERE error = 'timeout'), 0, 0, 0, 0
FROM r GROUP BY variant, channel_id
UNION ALL
SELECT 'x', variant, channel_id, sentiment::int, NULL, count(*), 0, 0, 0, 0, 0, 0, 0, 0
FROM (
  SELECT DISTINCT ON (x.message_id, x.user_id, x.emoji) r.variant, r.channel_id, x.action,
         x.sentiment
{_REACTIONS_LATEST_FIRST}
) AS latest
WHERE action = 'add' GROUP BY variant, channel_id, sentiment
UNION ALL
SELECT 'f', r.variant, r.channel_id, NULL, NULL, count(*), count(*) FILTER (WHERE f.is_correction),
       0, 0, 0, 0, 0, 0, 0
{_FOLLOWUPS} GROUP BY r.variant, r.channel_id
"""


def aggregate_with_channels(
    rollout_key: str,
    hour: datetime,
    ts_from: datetime | None = None,
    ts_to: datetime | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """(``aggregate``, ``channel_aggregate`` without the per-channel latency histograms) of one
    bucket: on PostgreSQL from one statement, the bucket's replies read once."""
    lo, hi = _range_of(hour, ts_from, ts_to)
    if lo >= hi:
        return {}, {}
    if not is_postgres():
        per_channel = channel_aggregate(rollout_key, hour, ts_from, ts_to)
        for figures in per_channel.values():
            figures["latency_hist"] = {}
        return aggregate(rollout_key, hour, ts_from, ts_to), per_channel
    with connection.cursor() as cursor:
        cursor.execute(_AGGREGATE_CHANNELS_SQL, {"key": rollout_key, "lo": lo, "hi": hi})
        rows = cursor.fetchall()
    variant_rows: list[tuple] = []
    feedback: dict[tuple, list[int]] = {}  # ('x', variant, sentiment) / ('f', variant, None)
    channels: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, variant, channel, key, error, n, a, hits, known, *rest in rows:
        if kind == "r":
            variant_rows.append((kind, variant, key, error, n, a, hits, known, *rest))
            continue
        if kind != "c":
            sums = feedback.setdefault((kind, variant, key if kind == "x" else None), [0, 0])
            sums[0] += n
            sums[1] += a
        f = channels.get((variant, channel))
        if f is None:
            f = channels[(variant, channel)] = empty_channel()
        if kind == "c":
            f["responses"] += n
            f["errors"] += a
            f["cache_hits"] += hits
            f["cache_known"] += known
            f["timeouts"] += rest[0]
        elif kind == "x":
            if key:  # neutral reactions are not counted per channel
                f["reactions_positive" if key > 0 else "reactions_negative"] += n
        else:
            f["followups"] += n
            f["corrections"] += a
    for (kind, variant, key), (n, a) in feedback.items():
        variant_rows.append((kind, variant, key, None, n, a, 0, 0, 0, 0, 0, 0, 0))
    return _fold_aggregate_rows(variant_rows), channels


def channel_aggregate(
    rollout_key: str,
    hour: datetime,
    ts_from: datetime | None = None,
    ts_to: datetime | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The exact figures per (variant, channel) of one bucket from raw rows (optionally only
    the replies with ``ts_from <= ts < ts_to``), counted as ``aggregate`` counts them."""
    lo, hi = _range_of(hour, ts_from, ts_to)
    if lo >= hi:
        return {}
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(_CHANNEL_SQL, {"key": rollout_key, "lo": lo, "hi": hi})
            rows = cursor.fetchall()
    else:
        rows = _channel_rows_portable(rollout_key, lo, hi)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, variant, channel, key, n, a, b, hits, known in rows:
        f = out.get((variant, channel))
        if f is None:
            f = out[(variant, channel)] = empty_channel()
        if kind == "r":
            f["responses"] += n
            f["errors"] += a
            f["timeouts"] += b
            f["cache_hits"] += hits
            f["cache_known"] += known
            f["latency_hist"][key] = f["latency_hist"].get(key, 0) + n
        elif kind == "x":
            f["reactions_positive" if key > 0 else "reactions_negative"] += n
        else:
            f["followups"] += n
            f["corrections"] += a
    return out


def _channel_rows_portable(rollout_key: str, lo: datetime, hi: datetime) -> list[tuple]:
    """The rows of _CHANNEL_SQL with the ORM and Python (SQLite has no DISTINCT ON)."""
    replies = ResponseEvent.objects.filter(rollout_key=rollout_key, ts__gte=lo, ts__lt=hi)
    owner: dict[str, tuple[str, str]] = {}
    rows: list[tuple] = []
    for message_id, variant, channel, bucket, error, hit in replies.values_list(
        "message_id", "variant", "channel_id", "latency_bucket", "error", "cache_hit"
    ):
        owner[message_id] = (variant, channel)
        rows.append(
            ("r", variant, channel, int(bucket), 1, error is not None, error == "timeout",
             hit is True, hit is not None)
        )  # fmt: skip
    if not owner:
        return rows
    latest: dict[tuple, tuple] = {}
    for message_id, user_id, emoji, action, sentiment, ts, pk in ReactionEvent.objects.filter(
        message_id__in=list(owner)
    ).values_list("message_id", "user_id", "emoji", "action", "sentiment", "ts", "id"):
        order = (ts, action == ReactionEvent.Action.REMOVE, pk)
        key = (message_id, user_id, emoji)
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, message_id, action, sentiment)
    for _order, message_id, action, sentiment in latest.values():
        if action == ReactionEvent.Action.ADD and sentiment:
            rows.append(("x", *owner[message_id], int(sentiment), 1, 0, 0, 0, 0))
    for reply_to, is_correction in FollowupEvent.objects.filter(
        reply_to__in=list(owner)
    ).values_list("reply_to", "is_correction"):
        rows.append(("f", *owner[reply_to], None, 1, bool(is_correction), 0, 0, 0))
    return rows


def _replace_channel_rollups(rollout_key: str, hour: datetime, figures) -> None:
    """Make one hour's per-channel rows exactly these figures (caller holds the hour's lock)."""
    ChannelHourlyRollup.objects.filter(rollout_key=rollout_key, hour=hour).delete()
    ChannelHourlyRollup.objects.bulk_create(
        [
            ChannelHourlyRollup(
                rollout_key=rollout_key,
                hour=hour,
                variant=variant,
                channel_id=channel,
                **{name: f[name] for name in CHANNEL_FIELDS},
                latency_hist={str(k): v for k, v in f["latency_hist"].items()},
            )
            for (variant, channel), f in figures.items()
        ],
        batch_size=1000,
    )


_CHANNEL_DAY_SQL = """
WITH h AS (
  SELECT * FROM metrics_channelhourlyrollup
  WHERE rollout_key = %(key)s AND hour >= %(day)s AND hour < %(next)s
), hist AS (
  SELECT variant, channel_id, jsonb_object_agg(k, n) AS latency_hist
  FROM (
    SELECT variant, channel_id, e.key AS k, sum(e.value::bigint) AS n
    FROM h, jsonb_each_text(h.latency_hist) AS e GROUP BY variant, channel_id, e.key
  ) AS t GROUP BY variant, channel_id
), sums AS (
  SELECT variant, channel_id, {sums} FROM h GROUP BY variant, channel_id
)
INSERT INTO metrics_channeldailyrollup
  (rollout_key, day, variant, channel_id, {columns}, latency_hist)
SELECT %(key)s, %(day)s, s.variant, s.channel_id, {columns},
       COALESCE(hist.latency_hist, '{{}}'::jsonb)
FROM sums AS s LEFT JOIN hist USING (variant, channel_id)
"""


def _recompute_channel_day(rollout_key: str, day: datetime) -> None:
    """Rebuild a day's per-channel rows as the sums of its per-channel hourly rows (in the
    caller's transaction, under the day's lock taken by _recompute_day)."""
    ChannelDailyRollup.objects.filter(rollout_key=rollout_key, day=day).delete()
    if is_postgres():
        sql = _CHANNEL_DAY_SQL.format(
            sums=", ".join(f"sum({c})::int AS {c}" for c in CHANNEL_FIELDS),
            columns=", ".join(CHANNEL_FIELDS),
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, {"key": rollout_key, "day": day, "next": day + DAY})
        return
    totals: dict[tuple[str, str], dict[str, Any]] = defaultdict(empty_channel)
    for row in ChannelHourlyRollup.objects.filter(
        rollout_key=rollout_key, hour__gte=day, hour__lt=day + DAY
    ):
        f = totals[(row.variant, row.channel_id)]
        for name in CHANNEL_FIELDS:
            f[name] += getattr(row, name)
        for k, n in row.latency_hist.items():
            f["latency_hist"][k] = f["latency_hist"].get(k, 0) + n
    ChannelDailyRollup.objects.bulk_create(
        [
            ChannelDailyRollup(
                rollout_key=rollout_key, day=day, variant=variant, channel_id=channel, **f
            )
            for (variant, channel), f in totals.items()
        ],
        batch_size=1000,
    )


def channel_totals(
    rollout_key: str,
    since: datetime,
    until: datetime,
    *,
    latency: bool = False,
    live: set[datetime] | None = None,
    raw: dict[datetime, dict[tuple[str, str], dict[str, Any]]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {channel: figures}} for replies with since <= ts < until: the per-channel rows
    for clean whole days and hours (summed in SQL), raw rows for dirty hours and the partial
    hours at both ends, as ``totals_by_variant`` does. ``latency``: also merge the channels'
    latency histograms (otherwise they are left empty). One REPEATABLE READ snapshot on
    PostgreSQL.

    ``live``: the hours to take from raw rows, when the caller has just read them (the
    dashboard's window); ``raw``: their per-channel figures already aggregated
    (``aggregate_with_channels``, no histograms: not with ``latency``)."""
    if raw and latency:
        raise ValueError("raw per-channel figures carry no latency histograms.")
    if is_postgres() and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _channel_totals(rollout_key, since, until, latency, live, raw or {})
    return _channel_totals(rollout_key, since, until, latency, live, raw or {})


def _channel_totals(rollout_key, since, until, latency: bool, live, raw):
    first = hour_of(since)
    skip = set(live) if live is not None else live_hours(rollout_key, since, until)
    skip |= {hour for hour in raw if first <= hour < until}
    if since > first:
        skip.add(first)
    if until > hour_of(until):
        skip.add(hour_of(until))
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def add(variant: str, channel: str, part: dict[str, Any]) -> None:
        f = out[variant].get(channel)
        if f is None:
            f = out[variant][channel] = empty_channel()
        for name in CHANNEL_FIELDS:
            f[name] += part[name]
        if latency:
            hist = f["latency_hist"]
            for k, n in part["latency_hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + int(n)

    # whole clean days from the daily rows, the other clean hours from the hourly ones
    days, segments = _rollup_parts(first, until, skip)
    parts: list[QuerySet[ChannelDailyRollup] | QuerySet[ChannelHourlyRollup]] = []
    if days:
        day_rows = ChannelDailyRollup.objects.filter(rollout_key=rollout_key, day__in=days)
        if latency:
            parts.append(day_rows)
        else:
            for variant, channels in _channel_day_sums(rollout_key, days, day_rows).items():
                for channel, part in channels.items():
                    add(variant, channel, part)
    if segments:
        ranges = Q()
        for start, end in segments:
            ranges |= Q(hour__gte=start, hour__lt=end)
        hour_rows = ChannelHourlyRollup.objects.filter(ranges, rollout_key=rollout_key).exclude(
            hour__in=sorted(skip)
        )
        if latency:
            parts.append(hour_rows)
        else:
            stamps = (
                HourlyRollup.objects.filter(ranges, rollout_key=rollout_key)
                .exclude(hour__in=sorted(skip))
                .order_by("hour", "variant")
                .values_list("id", "hour", "variant", "computed_at", *COUNT_FIELDS)
            )
            key = (rollout_key, "hours", tuple(segments), tuple(sorted(skip)))
            for variant, channels in _cached_channel_sums(key, stamps, hour_rows).items():
                for channel, part in channels.items():
                    add(variant, channel, part)
    for rows in parts:
        for variant, channels in _channel_sums(rows).items():
            for channel, part in channels.items():
                add(variant, channel, part)
        if latency:
            _merge_channel_hists(out, rows)
    for hour in sorted(skip):
        ts_from = since if hour < since else None
        ts_to = until if hour + HOUR > until else None
        if hour in raw and ts_from is None and ts_to is None:
            hour_parts = raw[hour]
        else:
            hour_parts = channel_aggregate(rollout_key, hour, ts_from, ts_to)
        for (variant, channel), part in hour_parts.items():
            add(variant, channel, part)
    return {v: dict(channels) for v, channels in out.items()}


def _channel_sums(rows) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {channel: counts}} of per-channel rollup rows, summed in SQL."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    sums = rows.values("variant", "channel_id").annotate(
        **{f"s_{name}": Sum(name) for name in CHANNEL_FIELDS}
    )
    for row in sums:
        out[row["variant"]][row["channel_id"]] = {
            **{name: int(row[f"s_{name}"] or 0) for name in CHANNEL_FIELDS},
            "latency_hist": {},
        }
    return out


# The per-channel sums of whole days, by the days' DailyRollup rows: a day's ChannelDailyRollup
# rows are rebuilt only with its DailyRollup rows, in the same transaction (_recompute_day), which
# get a new computed_at and their counts then; so while those rows (stamp and counts, every
# variant) are unchanged, so are the day's per-channel rows. A 30-day view reads ~60 day rows
# instead of summing ~9,000 per-channel rows again (issue 16: the dashboard's speed goal). The
# same holds for hours: an hour's ChannelHourlyRollup rows are rebuilt only by recompute_hour,
# with its HourlyRollup rows (new computed_at), so the hours around the whole days are kept by
# their HourlyRollup rows' stamps (~50 rows instead of summing ~15,000 per-channel rows).
_CHANNEL_DAYS_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_CHANNEL_DAYS_CACHE_SIZE = 64  # ~300 channels x 9 counts each: a few ranges of a few rollouts


def _channel_day_sums(rollout_key: str, days: list[datetime], rows) -> dict[str, dict]:
    """``_channel_sums(rows)`` of the ChannelDailyRollup ``rows`` of ``days``, cached by the
    days' DailyRollup rows (read in the caller's snapshot). Returns copies: callers add to them."""
    stamps = (
        DailyRollup.objects.filter(rollout_key=rollout_key, day__in=days)
        .order_by("day", "variant")
        .values_list("id", "day", "variant", "computed_at", *COUNT_FIELDS)
    )
    return _cached_channel_sums((rollout_key, tuple(days)), stamps, rows)


def _cached_channel_sums(key: tuple, stamps, rows) -> dict[str, dict]:
    """``_channel_sums(rows)``, kept in _CHANNEL_DAYS_CACHE under ``key`` and the ``stamps``
    (the rollup rows whose rewrite rewrites ``rows``; read in the caller's snapshot). Returns
    copies: callers add to them."""
    key = (connection.alias, connection.settings_dict["NAME"], *key, tuple(stamps))
    sums = _CHANNEL_DAYS_CACHE.get(key)
    if sums is None:
        sums = _channel_sums(rows)
        _CHANNEL_DAYS_CACHE[key] = sums
        while len(_CHANNEL_DAYS_CACHE) > _CHANNEL_DAYS_CACHE_SIZE:
            try:
                _CHANNEL_DAYS_CACHE.popitem(last=False)
            except KeyError:  # another thread evicted it meanwhile
                break
    else:
        try:
            _CHANNEL_DAYS_CACHE.move_to_end(key)
        except KeyError:
            pass
    return {
        variant: {channel: {**f, "latency_hist": {}} for channel, f in channels.items()}
        for variant, channels in sums.items()
    }


def _merge_channel_hists(out, rows) -> None:
    """Add the rows' latency histograms per (variant, channel): in SQL on PostgreSQL."""
    if is_postgres():
        sql, params = rows.values("variant", "channel_id", "latency_hist").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT r.variant, r.channel_id, e.key, sum(e.value::bigint) FROM ({sql}) AS r, "
                "jsonb_each_text(r.latency_hist) AS e GROUP BY r.variant, r.channel_id, e.key",
                params,
            )
            for variant, channel, k, n in cursor.fetchall():
                hist = out[variant][channel]["latency_hist"]
                hist[int(k)] = hist.get(int(k), 0) + int(n)
        return
    for variant, channel, hist_part in rows.values_list("variant", "channel_id", "latency_hist"):
        hist = out[variant][channel]["latency_hist"]
        for k, n in hist_part.items():
            hist[int(k)] = hist.get(int(k), 0) + int(n)
