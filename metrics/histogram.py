"""Mergeable latency histograms over fixed log-spaced buckets (pure, no database).

Bucket 0 holds [0, 1) ms; bucket i >= 1 holds [GROWTH**(i-1), GROWTH**i) ms, up to bucket
MAX_BUCKET which also takes everything slower. With GROWTH = 1.05 a percentile read from the
histogram is within 2.5% of the true value, whatever hours are merged, because merging is a sum
of counts. Histograms are sparse dicts ``{bucket index: count}`` (JSON keys are strings).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from itertools import accumulate

GROWTH = 1.05
_LOG_GROWTH = math.log(GROWTH)
MAX_BUCKET = 320  # 1.05**320 ms is about 6 hours


def bucket_of(latency_ms: float) -> int:
    if latency_ms < 1:
        return 0
    index = int(math.floor(math.log(latency_ms) / _LOG_GROWTH)) + 1
    # floating point at exact powers: keep the half-open interval honest
    if GROWTH ** (index - 1) > latency_ms:
        index -= 1
    elif GROWTH**index <= latency_ms:
        index += 1
    return min(max(index, 1), MAX_BUCKET)


def bounds(index: int) -> tuple[float, float]:
    if index <= 0:
        return 0.0, 1.0
    return GROWTH ** (index - 1), GROWTH**index


def representative(index: int) -> float:
    """The value reported for a bucket: its geometric middle (0.5 ms for bucket 0)."""
    if index <= 0:
        return 0.5
    lo, hi = bounds(index)
    return math.sqrt(lo * hi)


def merge(histograms: Iterable[Mapping]) -> dict[int, int]:
    total: dict[int, int] = {}
    for hist in histograms:
        for key, count in hist.items():
            k = int(key)
            total[k] = total.get(k, 0) + int(count)
    return total


def percentile(hist: Mapping, q: float) -> float | None:
    """The q-quantile (0 < q <= 1), nearest rank, or None for an empty histogram."""
    items = sorted((int(k), int(v)) for k, v in hist.items() if int(v) > 0)
    n = sum(v for _, v in items)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index, count in items:
        seen += count
        if seen >= rank:
            return round(representative(index), 1)
    return round(representative(items[-1][0]), 1)


def percentiles(hist: Mapping) -> dict[str, float | None]:
    return {
        "p50": percentile(hist, 0.50),
        "p95": percentile(hist, 0.95),
        "p99": percentile(hist, 0.99),
    }


RANK_QUANTILES = (0.50, 0.95, 0.99)


def ranks(hist: Mapping) -> str:
    """The bucket indexes holding p50, p95 and p99 by nearest rank, as "i,j,k" ("" for an empty
    histogram): what the dashboard draws for one hourly rollup row, stored beside its histogram
    (``HourlyRollup.latency_ranks``) so a 30-day chart by hour needs no histogram decoded. The
    buckets are walked in ascending index order, the same walk as ``percentile``; the reported
    value of a bucket is ``representative``."""
    items = sorted((int(k), int(n)) for k, n in hist.items())
    running = list(accumulate(n for _, n in items))
    if not running or running[-1] <= 0:
        return ""
    total = running[-1]
    return ",".join(
        str(items[bisect_left(running, max(1, math.ceil(q * total)))][0]) for q in RANK_QUANTILES
    )


def stamped_ranks(hist: Mapping, micros: int) -> str:
    """``ranks(hist)`` with the row's ``computed_at`` in microseconds since the epoch:
    "i,j,k@micros". A reader trusts the ranks only while the row's computed_at is that one, so
    a row rewritten by code that does not write ranks (a worker still on an older release while
    the migration runs) is read from its histogram, never from stale ranks."""
    return f"{ranks(hist)}@{micros}"
