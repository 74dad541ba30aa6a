"""The review sampling rule and the agreement statistic, pure: no database.

Rule ``equal-variant/day/channel v1`` (``draw``):

1. **Equal allocation per prompt version.** The sample size is split equally between the
   variants that have candidate replies in the window (50 over v1 and v2 gives 25 and 25; over
   v1, v2_full and v2_simplified gives 17, 17, 16, the odd units going to variants in name
   order). A variant with fewer candidates than its share gives all it has and the rest is
   shared equally among the others ("water-filling"). Why not proportional to traffic: the
   question the review answers is "is v2's hallucination rate the same or lower than v1's", and
   the precision of a difference of two rates is best, for a fixed total, when both sides have
   the same n. At 5% v2 traffic a proportional sample of 50 would give v2 two or three replies,
   which says nothing. The price is that pooled, all-variant rates must be weighted by traffic,
   not read off the sample (the per-variant rates the dashboard shows are unaffected).
2. **Spread over days.** Inside a variant its share is split equally between the UTC days that
   have candidates (water-filling again; odd units to days in seeded-random order), so a busy
   Saturday does not crowd out the rest of the week.
3. **Spread over channels.** Inside a day, replies are taken one at a time from the channel that
   has given the fewest replies to this variant so far (over the whole week; ties in a
   seeded-random channel order), each channel's replies in seeded-random order. No channel
   dominates unless it is the only one.
4. **Fewer candidates than asked:** everything is taken and the shortfall recorded.

The caller supplies the candidates (replies of the window with text, received before the cut-off,
never in an earlier sample); ``draw`` sorts them by id first, so the same candidates and the same
seed always give the same sample, in the same queue order. The queue order is shuffled (seeded),
so the order of the queue says nothing about the version. A share of the drawn items is picked
(seeded) for double grading.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

RULE = "equal-variant/day/channel v1"


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    variant: str
    day: date
    channel_id: str


@dataclass
class Draw:
    ids: list[int]  # in queue order
    double: set[int]  # ids to be graded by two reviewers
    allocation: dict[str, dict] = field(default_factory=dict)
    requested: int = 0

    @property
    def shortfall(self) -> int:
        return max(0, self.requested - len(self.ids))


def water_fill(total: int, available: dict[Hashable, int], order: Sequence[Hashable]) -> dict:
    """Split ``total`` as equally as possible over ``order``'s keys, none above its availability;
    what a key cannot take goes to the others. Odd units go to keys earlier in ``order``."""
    alloc = {key: 0 for key in order}
    open_keys = [key for key in order if available.get(key, 0) > 0]
    left = min(total, sum(available.get(key, 0) for key in order))
    while left > 0 and open_keys:
        share, extra = divmod(left, len(open_keys))
        still_open = []
        given = 0
        for index, key in enumerate(open_keys):
            want = share + (1 if index < extra else 0)
            room = available[key] - alloc[key]
            take = min(want, room)
            alloc[key] += take
            given += take
            if alloc[key] < available[key]:
                still_open.append(key)
        left -= given
        if given == 0:
            break
        open_keys = still_open
    return alloc


def draw(candidates: Iterable[Candidate], size: int, seed: int, double_share: float = 0.0) -> Draw:
    """The sample of ``size`` replies by the rule in the module docstring."""
    if size < 0:
        raise ValueError("size must be >= 0")
    if not 0.0 <= double_share <= 1.0:
        raise ValueError("double_share must be between 0 and 1")
    rng = random.Random(seed)
    pool = sorted(candidates, key=lambda c: c.id)
    by_variant: dict[str, list[Candidate]] = defaultdict(list)
    for cand in pool:
        by_variant[cand.variant].append(cand)
    variants = sorted(by_variant)
    quota = water_fill(size, {v: len(by_variant[v]) for v in variants}, variants)

    chosen: list[int] = []
    allocation: dict[str, dict] = {}
    for variant in variants:
        cands = by_variant[variant]
        by_day: dict[date, list[Candidate]] = defaultdict(list)
        for cand in cands:
            by_day[cand.day].append(cand)
        days = sorted(by_day)
        day_order = list(days)
        rng.shuffle(day_order)  # who gets the odd units
        day_quota = water_fill(quota[variant], {d: len(by_day[d]) for d in days}, day_order)
        uses: Counter[str] = Counter()
        picked_here: list[Candidate] = []
        for day in days:
            per_channel: dict[str, list[Candidate]] = defaultdict(list)
            for cand in by_day[day]:
                per_channel[cand.channel_id].append(cand)
            channel_order = sorted(per_channel)
            rng.shuffle(channel_order)
            for channel in channel_order:
                rng.shuffle(per_channel[channel])
            rank = {channel: i for i, channel in enumerate(channel_order)}
            for _ in range(day_quota[day]):
                channel = min(
                    (c for c in channel_order if per_channel[c]), key=lambda c: (uses[c], rank[c])
                )
                picked_here.append(per_channel[channel].pop())
                uses[channel] += 1
        chosen.extend(c.id for c in picked_here)
        allocation[variant] = {
            "available": len(cands),
            "target": quota[variant],
            "drawn": len(picked_here),
            "days": {d.isoformat(): day_quota[d] for d in days if day_quota[d]},
            "channels": len(uses),
        }

    rng.shuffle(chosen)  # queue order: blind to the version
    n_double = round(len(chosen) * double_share)
    double = set(rng.sample(chosen, n_double)) if n_double else set()
    return Draw(ids=chosen, double=double, allocation=allocation, requested=size)


# --- agreement between reviewers ---------------------------------------------------------------


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e), where p_o is the
    observed agreement and p_e the agreement expected by chance from each rater's own category
    frequencies. None without pairs, and None when both raters used one and the same category
    only (p_e = 1: kappa is undefined; the raw agreement is then the figure to read)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[k] * second.get(k, 0) for k in first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def kappa_label(kappa: float | None) -> str:
    """Landis & Koch (1977) reading of a kappa."""
    if kappa is None:
        return "no double-graded replies yet"
    if kappa < 0:
        return "poor (worse than chance)"
    for bound, label in (
        (0.20, "slight"),
        (0.40, "fair"),
        (0.60, "moderate"),
        (0.80, "substantial"),
    ):
        if kappa <= bound:
            return label
    return "almost perfect"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (good at small n and rates near 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
