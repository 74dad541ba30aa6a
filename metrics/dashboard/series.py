"""Read queries of the comparison dashboard, over hourly rollups only.

Every figure here comes from ``metrics.rollups.per_hour`` (the ``HourlyRollup`` rows of the
range, with the few dirty hours aggregated from raw events, as ``metrics.selectors.hourly``
does) or from other small tables (audit entries, conversation stats, reviews). Ranges are whole
UTC hours, so no partial hour is ever aggregated from raw events.

``Window`` holds one page's worth of data, loaded once; the chart rows, the comparison table and
the cost figures are derived from it in Python. ``CHARTS`` names every chart the page shows, with
its columns: the CSV and JSON endpoints serve exactly these rows.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import pickle
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from rollout.models import AuditEntry, Rollout

from .. import histogram, rollups, selectors, stats
from ..guardrails.rules import Clusters
from ..models import ConversationStat, DailyRollup, HourlyRollup

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_RANGE = timedelta(days=400)
GRANULARITIES = ("hour", "day")

MARKER_ACTIONS: dict[str, str] = {
    AuditEntry.Action.PHASE_CHANGE: "phase",
    AuditEntry.Action.KILL_SWITCH_ENGAGE: "rollback",
    AuditEntry.Action.KILL_SWITCH_RELEASE: "release",
    AuditEntry.Action.OVERRIDE_SET: "override",
    AuditEntry.Action.OVERRIDE_REMOVE: "override",
    AuditEntry.Action.ROLLOUT_UPDATE: "change",
}


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    columns: tuple[str, ...]  # beyond period and variant
    unit: str = ""


CHARTS: dict[str, Chart] = {
    c.key: c
    for c in (
        Chart("responses", "Replies", ("responses",), "replies"),
        Chart(
            "errors",
            "Error and timeout rate",
            ("responses", "errors", "timeouts", "error_rate", "timeout_rate"),
            "%",
        ),
        Chart(
            "latency", "Latency p50 / p95 / p99", ("responses", "p50_ms", "p95_ms", "p99_ms"), "ms"
        ),
        Chart(
            "tokens",
            "Tokens per reply",
            ("responses", "input_per_reply", "output_per_reply"),
            "tokens",
        ),
        Chart("cost_per_reply", "Cost per reply", ("responses", "cost_per_reply_usd"), "$"),
        Chart("cost_per_day", "Cost per day", ("cost_usd", "hours_counted", "partial_day"), "$"),
        Chart(
            "sentiment",
            "Reaction sentiment (positive share)",
            ("positive", "negative", "positive_share"),
            "%",
        ),
        Chart(
            "corrections", "Correction rate", ("responses", "corrections", "correction_rate"), "%"
        ),
        Chart(
            "engagement",
            "Engagement (follow-ups per reply)",
            ("responses", "followups", "followups_per_reply"),
            "per reply",
        ),
        Chart(
            "conversation_messages",
            "Messages per conversation",
            ("conversations", "messages", "messages_per_conversation"),
            "messages",
        ),
        Chart(
            "conversation_length",
            "Conversation length",
            ("conversations", "avg_length_minutes"),
            "minutes",
        ),
        Chart("cache", "Cache hit rate", ("cache_known", "cache_hits", "cache_hit_rate"), "%"),
        Chart(
            "reviews",
            "Reviews (weekly)",
            (
                "graded",
                "hallucination_rate",
                "format_compliance",
                "uncertainty_calibration",
                "consistency",
            ),
            "%",
        ),
    )
}

# Review figures (metrics.selectors.review_weekly, else review_counts): metric, label, which
# direction is good, the count of "yes" and the count it is a share of.
REVIEW_METRICS = (
    ("hallucination_rate", "Hallucination rate", stats.LOWER, "hallucinations", "graded"),
    ("format_compliance", "Format compliance", stats.HIGHER, "format_ok", "format_applicable"),
    (
        "uncertainty_calibration",
        "Uncertainty calibration",
        stats.HIGHER,
        "calibrated",
        "uncertainty_applicable",
    ),
    ("consistency", "Consistency", stats.HIGHER, "consistent", "consistency_graded"),
)


def resolve_range(
    name: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """[since, until) in whole UTC hours. Named ranges end with the current hour included."""
    now = now or timezone.now()
    if name == "custom":
        if start is None or end is None:
            raise ValueError("custom ranges need start and end.")
        since, until = rollups.hour_of(start), rollups.hour_of(end)
        if end > until:
            until += HOUR
        return since, until
    until = rollups.hour_of(now) + HOUR
    return until - RANGES[name], until


def _periods(since: datetime, until: datetime, granularity: str) -> list[datetime]:
    step = DAY if granularity == "day" else HOUR
    first = since.replace(hour=0) if granularity == "day" else since
    out, t = [], first
    while t < until:
        out.append(t)
        t += step
    return out


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one hour's figures into a running total, in place (hot path: thousands of hours)."""
    for name in rollups.COUNT_FIELDS:
        total[name] += part[name]
    total["cost_usd"] += part["cost_usd"]
    total["latency_sum"] += part["latency_sum"]
    hist = total["latency_hist"]  # keys stay strings, as stored (see _hourly_figures)
    for k, n in part["latency_hist"].items():
        hist[k] = hist.get(k, 0) + n
    codes = total["errors_by_code"]
    for code, n in part["errors_by_code"].items():
        codes[code] = codes.get(code, 0) + n


def _empty() -> dict[str, Any]:
    figures = rollups.empty_figures()
    figures["cost_usd"] = 0.0
    return figures


def _sorted_hist(hist: dict[str, int]) -> dict[str, int]:
    """A histogram with its keys in ascending numeric order (what _percentiles walks)."""
    return dict(sorted(hist.items(), key=lambda kv: int(kv[0])))


@dataclass
class Window:
    """One rollout's figures over [since, until), by variant and period.

    ``days`` has every UTC day of the range (whole clean days from the daily rollups, the others
    summed from their hours); ``hours`` has every hour when the window is by hour, else only the
    hours of the days not read from daily rollups; ``light`` has every hour's replies, tokens,
    cost and follow-ups (the clusters of the means, the days with data). Histograms keep their
    keys in ascending numeric order (see _percentiles)."""

    rollout: Rollout
    since: datetime
    until: datetime
    granularity: str
    hours: dict[tuple[datetime, str], dict[str, Any]]
    days: dict[tuple[datetime, str], dict[str, Any]] = field(default_factory=dict)
    light: dict[tuple[datetime, str], dict[str, Any]] = field(default_factory=dict)
    markers: list[dict[str, Any]] = field(default_factory=list)
    reviews: dict[str, Any] = field(default_factory=dict)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = field(default_factory=timezone.now)
    # the hours read from raw events (dirty), with their per-channel counts from the same
    # query (rollups.aggregate_with_channels): the comparison's intervals reuse them
    live_channels: dict[datetime, dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=dict
    )
    # a digest of every figure read for the window (load_window): what ``cached`` keys by
    fingerprint: str | None = None

    @cached_property
    def variants(self) -> list[str]:
        """The rollout's variants first (control, treatment, simplified), then any others seen;
        only variants with replies in the range."""
        seen = {v for _, v in self.days}
        ordered = [v for v in self.rollout.variants if v in seen]
        return ordered + sorted(seen - set(ordered))

    @property
    def periods(self) -> list[datetime]:
        return _periods(self.since, self.until, self.granularity)

    @cached_property
    def _sums(self) -> dict[str, Any]:
        """By day and whole-window totals per variant."""
        by_day: dict[str, dict[datetime, dict[str, Any]]] = defaultdict(dict)
        totals: dict[str, dict[str, Any]] = defaultdict(_empty)
        for (day, variant), figures in sorted(self.days.items()):
            by_day[variant][day] = figures
            _add(totals[variant], figures)
        for figures in totals.values():
            figures["latency_hist"] = _sorted_hist(figures["latency_hist"])
        return {"day": by_day, "totals": dict(totals)}

    @cached_property
    def _by_hour(self) -> dict[str, dict[datetime, dict[str, Any]]]:
        """By hour per variant when the window is by hour (else empty); apart from ``_sums``:
        a view whose hourly figures come from the cache (``cached``) never sorts its hours."""
        by_hour: dict[str, dict[datetime, dict[str, Any]]] = defaultdict(dict)
        if self.granularity == "hour":
            for (hour, variant), figures in sorted(self.hours.items()):
                by_hour[variant][hour] = figures
        return by_hour

    def by_period(
        self, granularity: str | None = None
    ) -> dict[str, dict[datetime, dict[str, Any]]]:
        """{variant: {period start: figures}} by hour or by day (default: the window's)."""
        granularity = granularity or self.granularity
        return self._by_hour if granularity == "hour" else self._sums[granularity]

    def totals(self) -> dict[str, dict[str, Any]]:
        return self._sums["totals"]

    @cached_property
    def spending(self) -> dict[str, Any]:
        """``actual_cost`` of the window, computed once."""
        return actual_cost(self)

    @cached_property
    def _light_by_variant(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (_hour, variant), figures in sorted(self.light.items()):
            out[variant].append(figures)
        return out

    def clusters(self, variant: str, numerator) -> list[tuple[float, float]]:
        """(replies, numerator(figures)) per hour of a variant: the sample for a mean."""
        return [
            (f["responses"], float(numerator(f))) for f in self._light_by_variant.get(variant, [])
        ]


_ROLLUP_COLUMNS = (
    *rollups.COUNT_FIELDS,
    "cost_usd",
    "latency_sum",
    "latency_hist",
    "errors_by_code",
)
_FIGURES_SQL = (
    "SELECT extract(epoch FROM {bucket})::bigint, variant, {counts}, cost_usd::float8, "
    "latency_sum, {hist}, COALESCE((errors_by_code->>'timeout')::bigint, 0), {ranks}, "
    "(extract(epoch FROM computed_at) * 1000000)::bigint "
    "FROM {table} WHERE rollout_key = %s AND ({where})"
)
# an hourly row drawn from its stored ranks (a whole day's hour, ranks derived) leaves its
# histogram in the database: detoasting and printing ~1,400 jsonb documents was most of the query
_RANKED_HIST = (
    "CASE WHEN split_part(latency_ranks, '@', 2) = "
    "((extract(epoch FROM computed_at) * 1000000)::bigint)::text "
    "AND extract(epoch FROM hour)::bigint / 86400 = ANY(%s::bigint[]) "
    "THEN NULL ELSE latency_hist::text END"
)
LIGHT_COLUMNS = ("responses", "input_tokens", "output_tokens", "cost_usd", "followups")
_LIGHT_SQL = (
    "SELECT extract(epoch FROM hour)::bigint, variant, responses, input_tokens, output_tokens, "
    "cost_usd::float8, followups FROM metrics_hourlyrollup "
    "WHERE rollout_key = %s AND hour >= %s AND hour < %s"
)


@lru_cache(maxsize=16384)
def _from_epoch(seconds: int) -> datetime:
    """Hours travel as epoch seconds: psycopg's timestamptz parsing costs ~5 µs a row."""
    return datetime.fromtimestamp(seconds, UTC)


# Derived figures of hourly rollup rows, by (rollout, hour, variant, computed_at): a row is
# rewritten with a new computed_at whenever its hour is recomputed, and a past hour seldom is,
# so a 30-day page by hour decodes and derives only the hours new since the last view.
_SLIM_CACHE: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_SLIM_CACHE_SIZE = 10_000  # ~3 kB each: a few 30-day ranges of a few rollouts


def _slim(key: tuple, build, ranks: str | None = None) -> dict[str, Any]:
    """The cached slim figures of a rollup row (every scalar; the histogram only when the row
    has no stored ``ranks``), built by ``build()`` when missing. The chart metrics are derived
    when first drawn (``_derived``): a view whose figures come from the shared cache
    (``cached``) draws none. No lock: each OrderedDict operation is atomic under the GIL, and a
    racing eviction only finds the cache smaller."""
    slim = _SLIM_CACHE.get(key)
    if slim is not None:
        try:
            _SLIM_CACHE.move_to_end(key)
        except KeyError:  # evicted meanwhile by another thread
            pass
        return slim
    slim = build()
    slim["_ranks"] = ranks
    _SLIM_CACHE[key] = slim
    while len(_SLIM_CACHE) > _SLIM_CACHE_SIZE:
        try:
            _SLIM_CACHE.popitem(last=False)
        except KeyError:
            break
    return slim


def _derived(figures: dict[str, Any]) -> dict[str, Any]:
    """The chart metrics of one (period, variant): kept in a slim row (``_slim``) once derived,
    the percentiles from its stored ranks when it has them; computed for the others."""
    metrics = figures.get("_metrics")
    if metrics is None:
        if "_ranks" not in figures:
            return _metrics(figures)
        metrics = figures["_metrics"] = _metrics(figures, figures["_ranks"])
    return metrics


_HIST = _ROLLUP_COLUMNS.index("latency_hist")


def _figures_rows(
    table: str,
    bucket: str,
    rollout_key: str,
    where: str,
    params: list,
    slim_days: set[datetime] | None = None,
    digest=None,
) -> list:
    """(bucket, variant, *_ROLLUP_COLUMNS) rows of a rollup table; histograms as dicts with
    string keys in the stored order (jsonb keeps non-negative integer keys in ascending numeric
    order: shorter first, then bytewise). Of the error codes only the timeouts are read (all the
    dashboard shows; a second JSON document per hour cost as much as the histogram).

    Hourly rows of the UTC days in ``slim_days`` (hours only drawn, never summed) come slim
    (``_slim``), their percentiles from the row's stored ``latency_ranks`` (their histograms
    are not read), or from the histogram when the row has none (or stale ones). ``digest``: a
    hashlib object the rows read are fed to, as they came (``Window.fingerprint``)."""
    hourly = table == "metrics_hourlyrollup"
    slim_days = slim_days if hourly else None
    if rollups.is_postgres():
        # plain tuples: Django's per-value converters cost more than the query at ~2,000 rows
        hist, args = "latency_hist::text", [rollout_key, *params]
        if slim_days:  # the CASE's days (as epoch days) come before the WHERE's parameters
            hist = _RANKED_HIST
            args = [[int(day.timestamp()) // 86400 for day in sorted(slim_days)], *args]
        sql = _FIGURES_SQL.format(
            bucket=bucket,
            table=table,
            where=where,
            counts=", ".join(rollups.COUNT_FIELDS),
            hist=hist,
            ranks="latency_ranks" if hourly else "NULL",
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            rows = cursor.fetchall()
        decode: Callable[[Any], Any] = json.loads
    else:
        model: type[HourlyRollup] | type[DailyRollup]
        if hourly:
            model, lookups = HourlyRollup, {"hour__gte": params[0], "hour__lt": params[1]}
        else:
            model, lookups = DailyRollup, {"day__in": params[0]}
        rows = model.objects.filter(rollout_key=rollout_key, **lookups).values_list(
            bucket,
            "variant",
            *_ROLLUP_COLUMNS,
            *(["latency_ranks"] if hourly else []),
            "computed_at",
        )
        if not hourly:
            rows = [(*row[:-1], None, row[-1]) for row in rows]
        rows = list(rows)
        decode = dict
    if digest is not None:
        digest.update(pickle.dumps(rows, protocol=5))
    # UTC days as epoch days on PostgreSQL (rows come with epoch seconds: no datetime arithmetic)
    epoch_days = {int(day.timestamp()) // 86400 for day in slim_days or ()}
    out = []
    for start, variant, *values, stamped, stamp in rows:
        if decode is json.loads:
            slim = start // 86400 in epoch_days
            start = _from_epoch(start)
        else:
            slim = slim_days is not None and start.replace(hour=0) in slim_days
        if slim:
            # ranks stamped with another computed_at are stale (histogram.stamped_ranks)
            ranks, _, at = (stamped or "").partition("@")
            micros = stamp if decode is json.loads else rollups.epoch_micros(stamp)
            if not at or at != str(micros):
                ranks = None
            # every scalar in the key too: a clock frozen in tests gives equal computed_at
            if ranks is not None:
                key = (table, rollout_key, start, variant, stamp, ranks, *values[:-2])
                values[_HIST] = {}  # not read: nothing to decode
            else:
                key = (table, rollout_key, start, variant, stamp, len(values[_HIST]), *values[:-2])

            def build(values=values):
                return _decoded(values, decode)

            out.append((start, variant, _slim(key, build, ranks)))
        else:
            out.append((start, variant, _decoded(values, decode)))
    return out


def _decoded(values: list, decode) -> dict[str, Any]:
    """One rollup row's figures (see _figures_rows)."""
    figures = dict(zip(_ROLLUP_COLUMNS, values, strict=True))
    figures["cost_usd"] = float(figures["cost_usd"])
    if figures["latency_hist"] or decode is dict:  # {} when not read (see _figures_rows)
        figures["latency_hist"] = decode(figures["latency_hist"])
    codes = figures["errors_by_code"]
    if decode is json.loads:  # PostgreSQL: the timeouts alone, read from the jsonb in SQL
        figures["errors_by_code"] = {"timeout": codes} if codes else {}
    else:
        figures["errors_by_code"] = decode(codes)
    if decode is dict:
        figures["latency_hist"] = _sorted_hist(
            {str(k): n for k, n in figures["latency_hist"].items()}
        )
    return figures


def window_figures(
    rollout_key: str, since: datetime, until: datetime, granularity: str, digest=None
) -> tuple[dict, dict, dict, dict]:
    """(hours, days, light, live_channels) of a Window over whole hours [since, until), exact:
    clean whole days from the daily rollups, the other hours from the hourly rollups, the few
    dirty hours aggregated from raw events by metrics.rollups (with their per-channel counts,
    ``live_channels``, in the same query); on PostgreSQL from one snapshot (as rollups.per_hour
    does). Costs are floats here (display and statistics). ``digest``: a hashlib object fed
    every row read and the dirty hours' figures (``Window.fingerprint``)."""
    if rollups.is_postgres() and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _window_figures(rollout_key, since, until, granularity, digest)
    return _window_figures(rollout_key, since, until, granularity, digest)


def _window_figures(
    rollout_key: str, since: datetime, until: datetime, granularity: str, digest=None
) -> tuple[dict, dict, dict, dict]:
    live = rollups.live_hours(rollout_key, since, until)
    whole_days, segments = rollups._rollup_parts(since, until, live)
    whole = set(whole_days)
    hours: dict[tuple[datetime, str], dict[str, Any]] = {}
    spans = [(since, until)] if granularity == "hour" else segments
    for lo, hi in spans:
        for hour, variant, figures in _figures_rows(
            "metrics_hourlyrollup",
            "hour",
            rollout_key,
            "hour >= %s AND hour < %s",
            [lo, hi],
            # the hours of whole days are only drawn (the days come from daily rollups)
            slim_days=whole,
            digest=digest,
        ):
            if hour not in live:
                hours[(hour, variant)] = figures
    live_channels: dict[datetime, dict] = {}
    for hour in sorted(live):
        by_variant, live_channels[hour] = rollups.aggregate_with_channels(rollout_key, hour)
        if digest is not None:
            digest.update(pickle.dumps((hour, by_variant, live_channels[hour]), protocol=5))
        for variant, figures in by_variant.items():
            figures["cost_usd"] = float(figures["cost_usd"])
            figures["latency_hist"] = _sorted_hist(
                {str(k): n for k, n in figures["latency_hist"].items()}
            )
            hours[(hour, variant)] = figures
    days: dict[tuple[datetime, str], dict[str, Any]] = {}
    if whole_days:
        for day, variant, figures in _figures_rows(
            "metrics_dailyrollup",
            "day",
            rollout_key,
            "day = ANY(%s::timestamptz[])",
            [whole_days],
            digest=digest,
        ):
            days[(day, variant)] = figures
    summed: set[tuple[datetime, str]] = set()
    # the hours of whole days came slim (``_slim``): only the others are summed
    outside = [(key, f) for key, f in hours.items() if "_ranks" not in f]
    for (hour, variant), figures in sorted(outside, key=lambda item: item[0]):
        day = rollups.day_of(hour)
        if day in whole:
            continue
        slot = days.get((day, variant))
        if slot is None:
            slot = days[(day, variant)] = _empty()
            summed.add((day, variant))
        _add(slot, figures)
    for key in summed:
        days[key]["latency_hist"] = _sorted_hist(days[key]["latency_hist"])
    if granularity == "hour":
        light = {key: {c: f[c] for c in LIGHT_COLUMNS} for key, f in hours.items()}
    else:
        light = _light_rows(rollout_key, since, until, live, hours, digest)
    return hours, days, light, live_channels


def _light_rows(
    rollout_key, since, until, live, hours, digest=None
) -> dict[tuple[datetime, str], dict]:
    """Every hour's replies, tokens, cost and follow-ups: five columns of the hourly rollups
    (no histograms decoded), the dirty hours from ``hours``."""
    if rollups.is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(_LIGHT_SQL, [rollout_key, since, until])
            rows = cursor.fetchall()
        if digest is not None:
            digest.update(pickle.dumps(rows, protocol=5))
        rows = [(_from_epoch(hour), *rest) for hour, *rest in rows]
    else:
        rows = list(
            HourlyRollup.objects.filter(
                rollout_key=rollout_key, hour__gte=since, hour__lt=until
            ).values_list("hour", "variant", *LIGHT_COLUMNS)
        )
        if digest is not None:
            digest.update(pickle.dumps(rows, protocol=5))
    light = {
        (hour, variant): dict(zip(LIGHT_COLUMNS, values, strict=True))
        for hour, variant, *values in rows
        if hour not in live
    }
    for (hour, variant), figures in hours.items():
        if hour in live:
            light[(hour, variant)] = {c: figures[c] for c in LIGHT_COLUMNS}
    for figures in light.values():
        figures["cost_usd"] = float(figures["cost_usd"])
    return light


def load_window(
    rollout: Rollout,
    since: datetime,
    until: datetime,
    granularity: str,
    now: datetime | None = None,
) -> Window:
    """The window's figures, and its ``fingerprint``: a digest of everything read for it but
    the conversations (every rollup row as it came, stamps included, the dirty hours' raw
    figures, the markers and reviews) and of what it was asked for."""
    digest = hashlib.blake2b(digest_size=20)
    asked = (connection.settings_dict["NAME"], rollout.key, list(rollout.variants))
    digest.update(pickle.dumps((*asked, since, until, granularity), protocol=5))
    hours, days, light, live_channels = window_figures(
        rollout.key, since, until, granularity, digest
    )
    marks = markers(rollout, since, until)
    reviews = review_figures(rollout.key, since, until)
    digest.update(pickle.dumps((marks, reviews), protocol=5))
    return Window(
        rollout=rollout,
        since=since,
        until=until,
        granularity=granularity,
        hours=hours,
        days=days,
        light=light,
        markers=marks,
        reviews=reviews,
        conversations=conversation_rows(rollout.key, since, until, granularity),
        now=now or timezone.now(),
        live_channels=live_channels,
        fingerprint=digest.hexdigest(),
    )


# What a window's figures are derived into (the page's figure JSON, the comparison table) is
# kept in Django's cache (Redis in production: shared by every web process; in-process in the
# quick start) under the window's fingerprint: a rollup row rewritten (new computed_at), a dirty
# hour's events, a marker or a review change it, so a cached derivation is never of other
# figures. The code that derives them is in the key too (a deploy that changes it starts afresh).
# Kept briefly: with traffic, the current hour's rollup rows are rewritten every few minutes.
DERIVED_CACHE_SECONDS = 600
DERIVING_MODULES = (
    "metrics.dashboard.series",
    "metrics.dashboard.charts",
    "metrics.stats",
    "metrics.histogram",
    "metrics.rollups",
    "metrics.guardrails.rules",
    "metrics.dashboard.views",
)


@lru_cache(maxsize=1)
def _code_version() -> str:
    """A digest of the source of the modules that derive a window's figures."""
    digest = hashlib.blake2b(digest_size=8)
    for name in DERIVING_MODULES:
        path = importlib.import_module(name).__file__
        digest.update(Path(path).read_bytes() if path else name.encode())
    return digest.hexdigest()


def cached(window: Window, name: str, build):
    """``build()``, a derivation of ``window``'s figures named ``name`` (a picklable value),
    from the cache when the same figures were derived before (``Window.fingerprint``); windows
    without a fingerprint (not from load_window) are derived every time."""
    if window.fingerprint is None:
        return build()
    key = f"metrics:derived:{_code_version()}:{window.fingerprint}:{name}"
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, DERIVED_CACHE_SECONDS)
    return value


CONVERSATION_CHARTS = ("conversation_messages", "conversation_length")


def conversation_rows(
    rollout_key: str, since: datetime, until: datetime, granularity: str
) -> list[dict[str, Any]]:
    """The guide's engagement KPI per period and variant, over the conversations that started
    in the period (as metrics.selectors.engagement counts them for the summary API): how many,
    messages (bot replies + user follow-ups) per conversation and the mean length in minutes,
    from the rollup task's ConversationStat rows. Ordered by period, then variant."""
    rows = (
        ConversationStat.objects.filter(
            rollout_key=rollout_key, first_ts__gte=since, first_ts__lt=until
        )
        .annotate(period=Trunc("first_ts", granularity, tzinfo=UTC))
        .values("period", "variant")
        .annotate(
            n=Count("id"),
            messages=Sum(F("responses") + F("followups")),
            duration=Sum(F("last_ts") - F("first_ts")),
        )
        .order_by("period", "variant")
    )
    out = []
    for row in rows:
        n, duration = row["n"], row["duration"]
        seconds = (
            duration.total_seconds()
            if hasattr(duration, "total_seconds")
            else float(duration or 0) / 1e6
        )
        out.append(
            {
                "period": row["period"],
                "variant": row["variant"],
                "conversations": n,
                "messages": int(row["messages"] or 0),
                "messages_per_conversation": round(row["messages"] / n, 3),
                "avg_length_minutes": round(seconds / 60 / n, 2),
            }
        )
    return out


def markers(rollout: Rollout, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Phase changes, rollbacks, re-enables, overrides and percentage changes in the range, oldest
    first: {ts, kind, action, label, actor, reason}."""
    out = []
    for entry in (
        AuditEntry.objects.filter(
            rollout=rollout,
            action__in=list(MARKER_ACTIONS),
            created_at__gte=since,
            created_at__lt=until,
        )
        .order_by("created_at", "id")
        .only("created_at", "action", "actor", "reason", "before", "after")
    ):
        kind = MARKER_ACTIONS[entry.action]
        if kind == "change" and not {"percentage", "simplified_percentage", "enabled"} & {
            k for k, _b, _a in entry.changed_fields()
        }:
            continue  # a description edit is no event on a chart
        out.append(
            {
                "ts": entry.created_at,
                "kind": kind,
                "action": entry.action,
                "label": marker_label(entry),
                "actor": entry.actor,
                "reason": entry.reason,
                "channel_id": (entry.after or {}).get("channel_id")
                or (entry.before or {}).get("channel_id"),
            }
        )
    return out


def marker_label(entry: AuditEntry) -> str:
    after = entry.after or {}
    if entry.action == AuditEntry.Action.PHASE_CHANGE:
        name = after.get("phase") or after.get("current_phase") or after.get("name")
        pct = after.get("percentage")
        text = f"Phase: {name}" if name else "Phase change"
        return f"{text} {pct}%" if pct is not None else text
    if entry.action == AuditEntry.Action.KILL_SWITCH_ENGAGE:
        return "Rollback (kill switch on)"
    if entry.action == AuditEntry.Action.KILL_SWITCH_RELEASE:
        pct = after.get("percentage")
        return f"Re-enabled at {pct}%" if pct is not None else "Re-enabled"
    if entry.action == AuditEntry.Action.OVERRIDE_SET:
        return f"Override → {after.get('variant', '')}".strip()
    if entry.action == AuditEntry.Action.OVERRIDE_REMOVE:
        return "Override removed"
    changed = {k: (b, a) for k, b, a in entry.changed_fields()}
    if "percentage" in changed:
        return f"Percentage {changed['percentage'][0]}% → {changed['percentage'][1]}%"
    if "enabled" in changed:
        return "Enabled" if changed["enabled"][1] else "Disabled"
    return "Simplified share changed"


def review_figures(rollout_key: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Review figures for the range: {"weekly": [{week, variant, graded, <metric>: events}],
    "totals": {variant: {"graded", "hallucinations", "format_ok", ...}}}.

    Reads the review helper's weekly figures when metrics.selectors has ``review_weekly``, and
    ``metrics.selectors.review_counts`` (graded, hallucinations per variant) otherwise."""
    weekly_reader = getattr(selectors, "review_weekly", None)
    weekly: list[dict[str, Any]] = (
        list(weekly_reader(rollout_key, since, until)) if weekly_reader else []
    )
    totals: dict[str, dict[str, int]] = {}
    if weekly_reader:
        for row in weekly:
            slot = totals.setdefault(row["variant"], defaultdict(int))
            for key, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    slot[key] += value
        totals = {v: dict(t) for v, t in totals.items()}
    else:
        totals = {v: dict(t) for v, t in selectors.review_counts(rollout_key, since, until).items()}
    return {"weekly": weekly, "totals": totals}


# --- chart rows ------------------------------------------------------------------------------


def _rate(k: float, n: float) -> float | None:
    return round(k / n, 6) if n else None


def _per(k: float, n: float, digits: int = 2) -> float | None:
    return round(k / n, digits) if n else None


def _percentiles(hist: dict) -> dict[str, float | None]:
    """p50/p95/p99 as metrics.histogram.percentile gives them (nearest rank, bucket middle),
    from a histogram whose keys are in ascending numeric order (a Window's are): the running
    counts and the searches for the three ranks run in C (a page by hour asks ~3,000 times)."""
    running = list(accumulate(hist.values()))
    out: dict[str, float | None] = {"p50": None, "p95": None, "p99": None}
    if not running or running[-1] <= 0:
        return out
    n, keys = running[-1], list(hist)
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        out[name] = _bucket_value(keys[bisect_left(running, max(1, math.ceil(q * n)))])
    return out


@lru_cache(maxsize=1024)
def _bucket_value(index: str) -> float:
    """A histogram bucket's reported value, rounded for display (a few hundred buckets)."""
    return round(histogram.representative(int(index)), 1)


def _ranked(ranks: str) -> dict[str, float | None]:
    """p50/p95/p99 from an hourly row's stored ``latency_ranks`` (metrics.histogram.ranks: the
    same nearest-rank walk as _percentiles over its histogram)."""
    if not ranks:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = ranks.split(",")
    return {"p50": _bucket_value(p50), "p95": _bucket_value(p95), "p99": _bucket_value(p99)}


def _metrics(f: dict[str, Any], ranks: str | None = None) -> dict[str, Any]:
    """Every chart column of one (period, variant), computed once; the latency percentiles from
    ``ranks`` when given (an hourly row's stored ones), else from the histogram."""
    n = f["responses"]
    timeouts = f["errors_by_code"].get("timeout", 0)
    pos, neg = f["reactions_positive"], f["reactions_negative"]
    p = _ranked(ranks) if ranks is not None else _percentiles(f["latency_hist"])
    return {
        "responses": n,
        "errors": f["errors"],
        "timeouts": timeouts,
        "error_rate": _rate(f["errors"], n),
        "timeout_rate": _rate(timeouts, n),
        "p50_ms": p["p50"],
        "p95_ms": p["p95"],
        "p99_ms": p["p99"],
        "input_per_reply": _per(f["input_tokens"], n, 1),
        "output_per_reply": _per(f["output_tokens"], n, 1),
        "cost_per_reply_usd": _per(float(f["cost_usd"]), n, 6),
        "cost_usd": round(float(f["cost_usd"]), 4),
        "positive": pos,
        "negative": neg,
        "positive_share": _rate(pos, pos + neg),
        "corrections": f["corrections"],
        "correction_rate": _rate(f["corrections"], n),
        "followups": f["followups"],
        "followups_per_reply": _per(f["followups"], n, 4),
        "cache_known": f["cache_known"],
        "cache_hits": f["cache_hits"],
        "cache_hit_rate": _rate(f["cache_hits"], f["cache_known"]),
    }


def period_table(window: Window, granularity: str) -> list[tuple[datetime, str, dict[str, Any]]]:
    """(period, variant, every chart column) ordered by period then variant; cached per window."""
    cache = window.__dict__.setdefault("_tables", {})
    if granularity not in cache:
        order = {v: i for i, v in enumerate(window.variants)}
        table = []
        for variant, periods in window.by_period(granularity).items():
            for period, figures in periods.items():
                metrics = _derived(figures)
                metrics["period"], metrics["variant"] = period, variant
                table.append((period, variant, metrics))
        table.sort(key=lambda r: (r[0], order[r[1]]))
        cache[granularity] = table
    return cache[granularity]


def chart_rows(window: Window, key: str) -> list[dict[str, Any]]:
    """Tidy rows (period, variant, columns...) for one chart, ordered by period then variant.
    Cost per day is always by day; periods without replies are left out."""
    if key == "reviews":
        return _review_rows(window)
    if key == "cost_per_day":
        return _cost_per_day_rows(window)
    if key in CONVERSATION_CHARTS:
        columns = CHARTS[key].columns
        return [
            {"period": r["period"], "variant": r["variant"], **{c: r[c] for c in columns}}
            for r in window.conversations
        ]
    columns = CHARTS[key].columns
    table = period_table(window, window.granularity)
    return [{"period": p, "variant": v, **{c: m[c] for c in columns}} for p, v, m in table]


def figure_rows(window: Window, key: str) -> list[dict[str, Any]]:
    """The rows a chart's figure is drawn from: ``chart_rows``' rows, or for the charts over the
    window's periods the period table's own dicts (every column, period and variant included;
    a 30-day page by hour draws 1,440 of them in each of a dozen charts, so none is copied)."""
    if key in ("reviews", "cost_per_day", *CONVERSATION_CHARTS):
        return chart_rows(window, key)
    cache = window.__dict__.setdefault("_figure_rows", {})
    if window.granularity not in cache:
        cache[window.granularity] = [m for _p, _v, m in period_table(window, window.granularity)]
    return cache[window.granularity]


def _cost_per_day_rows(window: Window) -> list[dict[str, Any]]:
    """Dollars per UTC day and variant, with the hours of the day that count as data
    (``day_coverage``): a first or last day that is partly outside the range or the data, or
    not over yet, has fewer than 24 and is marked ``partial_day``."""
    coverage = window.spending["coverage"]
    rows = []
    for day, variant, m in period_table(window, "day"):
        hours = coverage.get(day, timedelta(0)) / HOUR
        rows.append(
            {
                "period": day,
                "variant": variant,
                "cost_usd": m["cost_usd"],
                "hours_counted": round(hours, 2),
                "partial_day": hours < 24,
            }
        )
    return rows


def _review_rows(window: Window) -> list[dict[str, Any]]:
    rows = []
    for row in window.reviews["weekly"]:
        out = {"period": row["week"], "variant": row["variant"], "graded": row.get("graded", 0)}
        for metric, _label, _dir, events, trials in REVIEW_METRICS:
            out[metric] = _rate(row[events], row.get(trials, 0)) if events in row else None
            if out[metric] is not None:
                # the 95% Wilson interval the chart draws as error bars
                out[f"{metric}_ci"] = stats.wilson(int(row[events]), int(row[trials]))
        rows.append(out)
    return rows


# --- comparison table ------------------------------------------------------------------------


def _ceil_hour(ts: datetime) -> datetime:
    hour = rollups.hour_of(ts)
    return hour if hour == ts else hour + timedelta(hours=1)


def channel_clusters(window: Window, control: str, treatment: str):
    """{rate: (control Clusters, treatment Clusters)} from the per-channel rollups over the
    window's hours (the hours the window's figures cover): channels are the unit of variance
    of the rates' intervals (metrics.stats, module docstring)."""
    cache = window.__dict__.setdefault("_channel_totals", {})
    if "totals" not in cache:
        since, until = _ceil_hour(window.since), _ceil_hour(window.until)
        whole_hours = since == window.since and until == window.until
        # the window's dirty hours were read with their per-channel counts: reuse them (and
        # its view of which hours are dirty) rather than aggregate them from raw rows again
        cache["totals"] = rollups.channel_totals(
            window.rollout.key,
            since,
            until,
            live=set(window.live_channels) if whole_hours else None,
            raw=window.live_channels if whole_hours else None,
        )
    by_variant = cache["totals"]
    rates = {
        "error_rate": ("errors", "responses"),
        "timeout_rate": ("timeouts", "responses"),
        "correction_rate": ("corrections", "responses"),
        "cache_hit_rate": ("cache_hits", "cache_known"),
        "positive_share": ("reactions_positive", None),
    }
    out = {}
    for metric, (num, den) in rates.items():

        def pairs(variant, num=num, den=den):
            for f in by_variant.get(variant, {}).values():
                trials = f[den] if den else f["reactions_positive"] + f["reactions_negative"]
                yield f[num], trials

        out[metric] = (Clusters.of(pairs(control)), Clusters.of(pairs(treatment)))
    return out


def comparison(window: Window, control: str, treatment: str) -> list[stats.Comparison]:
    """One row per metric: treatment against control over the window. Rates take channels as
    the unit of variance (``channel_clusters``). Kept by the window's fingerprint (``cached``):
    every figure it is computed from is in it, the per-channel rollup rows included (they are
    rewritten only with the hourly and daily rows the window read, in the same transaction)."""
    return cached(
        window,
        f"comparison:{control}:{treatment}",
        lambda: _comparison(window, control, treatment),
    )


def _comparison(window: Window, control: str, treatment: str) -> list[stats.Comparison]:
    totals = window.totals()
    empty = rollups.empty_figures()
    c, t = totals.get(control, empty), totals.get(treatment, empty)
    by_channel = channel_clusters(window, control, treatment)
    rows = [
        stats.compare_rates(
            "error_rate",
            "Error rate",
            stats.LOWER,
            (c["errors"], c["responses"]),
            (t["errors"], t["responses"]),
            clusters=by_channel["error_rate"],
        ),
        stats.compare_rates(
            "timeout_rate",
            "Timeout rate",
            stats.LOWER,
            (c["errors_by_code"].get("timeout", 0), c["responses"]),
            (t["errors_by_code"].get("timeout", 0), t["responses"]),
            clusters=by_channel["timeout_rate"],
        ),
    ]
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        rows.append(
            stats.compare_percentile(
                f"latency_{name}", f"Latency {name}", q, c["latency_hist"], t["latency_hist"]
            )
        )
    for metric, label, unit, pick in (
        ("input_tokens", "Input tokens per reply", "tokens", lambda f: f["input_tokens"]),
        ("output_tokens", "Output tokens per reply", "tokens", lambda f: f["output_tokens"]),
        ("cost_per_reply", "Cost per reply", "$", lambda f: f["cost_usd"]),
    ):
        rows.append(
            stats.compare_means(
                metric,
                label,
                unit,
                stats.LOWER,
                window.clusters(control, pick),
                window.clusters(treatment, pick),
            )
        )
    pos_c, neg_c = c["reactions_positive"], c["reactions_negative"]
    pos_t, neg_t = t["reactions_positive"], t["reactions_negative"]
    rows.append(
        stats.compare_rates(
            "positive_share",
            "Positive reactions (share)",
            stats.HIGHER,
            (pos_c, pos_c + neg_c),
            (pos_t, pos_t + neg_t),
            clusters=by_channel["positive_share"],
        )
    )
    if rows[-1].sample != "channels":
        rows[-1].sample = "reactions"
    rows.append(
        stats.compare_rates(
            "correction_rate",
            "Correction rate",
            stats.LOWER,
            (c["corrections"], c["responses"]),
            (t["corrections"], t["responses"]),
            clusters=by_channel["correction_rate"],
        )
    )
    rows.append(
        stats.compare_means(
            "followups_per_reply",
            "Engagement (follow-ups per reply)",
            "per reply",
            stats.HIGHER,
            window.clusters(control, lambda f: f["followups"]),
            window.clusters(treatment, lambda f: f["followups"]),
        )
    )
    rows.append(
        stats.compare_rates(
            "cache_hit_rate",
            "Cache hit rate",
            stats.HIGHER,
            (c["cache_hits"], c["cache_known"]),
            (t["cache_hits"], t["cache_known"]),
            clusters=by_channel["cache_hit_rate"],
        )
    )
    if rows[-1].sample != "channels":
        rows[-1].sample = "replies reporting cache_hit"
    rc = window.reviews["totals"].get(control, {})
    rt = window.reviews["totals"].get(treatment, {})
    for metric, label, direction, events, trials in REVIEW_METRICS:
        row = stats.compare_rates(
            metric,
            label,
            direction,
            (int(rc.get(events, 0)), int(rc.get(trials, 0))),
            (int(rt.get(events, 0)), int(rt.get(trials, 0))),
            sample="reviews",
        )
        if events not in rc and events not in rt and metric != "hallucination_rate":
            row.control = row.treatment = None
            row.verdict = stats.UNKNOWN
            row.relative = row.relative_lo = row.relative_hi = None
            row.difference = row.difference_lo = row.difference_hi = None
            row.more_needed = None
            row.note = "not graded yet"
        rows.append(row)
    return rows


# --- cost ------------------------------------------------------------------------------------

GUIDE_V2_COST_FACTOR = 3.5  # the guide: $0.0015 -> $0.00525 per request
PROJECTION_STEPS = (0, 5, 20, 50, 100)


@dataclass
class CostBasis:
    """Last 7 days (whole hours up to now) of one rollout: traffic and cost per reply."""

    replies_per_day: float
    cost_per_reply: dict[str, float | None]
    tokens_per_reply: dict[str, dict[str, float | None]]
    control: str
    treatment: str
    simplified: str
    simplified_share: float
    days: float

    @property
    def control_cost(self) -> float | None:
        return self.cost_per_reply.get(self.control)

    @property
    def treatment_cost(self) -> tuple[float | None, str]:
        """(cost per v2 reply at the current simplified share, where it comes from)."""
        full = self.cost_per_reply.get(self.treatment)
        simple = self.cost_per_reply.get(self.simplified)
        if full is None and simple is None:
            if self.control_cost is None:
                return None, "none"
            return self.control_cost * GUIDE_V2_COST_FACTOR, "guide"
        known = [c for c in (full, simple) if c is not None]  # one at least: see above
        s = self.simplified_share
        full_cost = full if full is not None else known[0]
        simple_cost = simple if simple is not None else known[0]
        return (1 - s) * full_cost + s * simple_cost, "measured"

    def per_day(self, percentage: float) -> float | None:
        v1 = self.control_cost
        v2, _ = self.treatment_cost
        if v1 is None or v2 is None:
            return None
        p = percentage / 100
        return self.replies_per_day * ((1 - p) * v1 + p * v2)


def cost_basis(rollout: Rollout, *, now: datetime | None = None) -> CostBasis:
    """Traffic and cost per reply over the last 7 days, summed in SQL from the hourly rollups
    (one query; the current hour counts once its rollup has run)."""
    until = rollups.hour_of(now or timezone.now()) + HOUR
    since = until - timedelta(days=7)
    totals = {
        row["variant"]: row
        for row in HourlyRollup.objects.filter(
            rollout_key=rollout.key, hour__gte=since, hour__lt=until
        )
        .values("variant")
        .annotate(
            n=Sum("responses"),
            cost=Sum("cost_usd"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
        )
    }
    replies = sum(r["n"] or 0 for r in totals.values())
    return CostBasis(
        replies_per_day=replies / 7,
        cost_per_reply={v: float(r["cost"]) / r["n"] for v, r in totals.items() if r["n"]},
        tokens_per_reply={
            v: {"input": r["input"] / r["n"], "output": r["output"] / r["n"]}
            for v, r in totals.items()
            if r["n"]
        },
        control=rollout.control_variant,
        treatment=rollout.treatment_variant,
        simplified=rollout.simplified_variant,
        simplified_share=rollout.simplified_percentage / 100,
        days=7.0,
    )


def day_coverage(
    hours_with_data: Iterable[datetime], since: datetime, until: datetime, now: datetime
) -> dict[datetime, timedelta]:
    """How much of each UTC day of [since, until) counts as a day with data, for per-day money.

    The span runs from the start of the first hour with replies in the range to the end of the
    last one, cut at ``now`` (the current hour counts as far as it has gone); within it, only the
    UTC days with at least one reply count, each by the part of it inside the span. So a range
    that holds 14 days of data counts 14 days whatever its length, a rollout that started at
    15:00 counts its first day as 9 hours, and a whole day without a reply counts nothing."""
    hours = sorted(h for h in hours_with_data if since <= h < until)
    if not hours:
        return {}
    start, end = hours[0], min(hours[-1] + HOUR, until, max(now, hours[0]))
    out: dict[datetime, timedelta] = {}
    for day in sorted({h.replace(hour=0) for h in hours}):  # UTC hours: the day is hour 0
        part = min(day + DAY, end) - max(day, start)
        if part > timedelta(0):
            out[day] = part
    return out


def spend(
    costs: dict[datetime, float], since: datetime, until: datetime, now: datetime
) -> dict[str, Any]:
    """Dollars spent in [since, until) from {hour: cost of that hour's replies} (hours with
    replies only): the total, the days with data (``day_coverage``), per day and per 30 days."""
    coverage = day_coverage(costs, since, until, now)
    days = sum(coverage.values(), timedelta(0)) / DAY
    total = sum(costs.values())
    per_day = total / days if days else None
    return {
        "since": since,
        "until": until,
        "total": total,
        "days_with_data": days,
        "per_day": per_day,
        "per_month": per_day * 30 if per_day is not None else None,
        "coverage": coverage,
    }


def spend_by_hour(rollout_key: str, since: datetime, until: datetime) -> dict[datetime, float]:
    """{hour: dollars} over the hours of [since, until) that had replies: two columns of the
    hourly rollups, the dirty hours aggregated from raw events (cost.json: no histograms read)."""
    live = rollups.live_hours(rollout_key, since, until)
    out: dict[datetime, float] = defaultdict(float)
    rows = HourlyRollup.objects.filter(
        rollout_key=rollout_key, hour__gte=since, hour__lt=until, responses__gt=0
    ).values_list("hour", "cost_usd")
    for hour, cost in rows:
        if hour not in live:
            out[hour] += float(cost)
    for hour in live:
        for figures in rollups.aggregate(rollout_key, hour).values():
            if figures["responses"]:
                out[hour] += float(figures["cost_usd"])
    return dict(out)


def actual_cost(window: Window) -> dict[str, Any]:
    """Dollars in the window: total, per day with data and per 30 days (``spend``), by variant."""
    costs: dict[datetime, float] = defaultdict(float)
    by_variant: dict[str, float] = defaultdict(float)
    for (hour, variant), f in window.light.items():
        if f["responses"]:
            costs[hour] += float(f["cost_usd"])
            by_variant[variant] += float(f["cost_usd"])
    return {**spend(costs, window.since, window.until, window.now), "by_variant": dict(by_variant)}
