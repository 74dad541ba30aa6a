"""The admin-editable reference data ingest needs: model prices, the emoji sentiment map and the
correction patterns, cached in each process.

Each process keeps one loaded copy and checks a stamp in the shared cache once per batch; any
save or delete of a ModelPrice, EmojiSentiment or CorrectionPattern (admin included) replaces the
stamp, so every process reloads on its next batch.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache

STAMP_KEY = "metrics:reference-stamp"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    valid_from: datetime
    input_per_million: Decimal
    output_per_million: Decimal
    cached_per_million: Decimal


@dataclass(slots=True)
class Reference:
    stamp: str = ""
    prices: dict[str, list[Price]] = field(default_factory=dict)  # newest first
    sentiment: dict[str, int] = field(default_factory=dict)
    patterns: list[re.Pattern] = field(default_factory=list)

    def price_at(self, model: str, ts: datetime) -> Price | None:
        for price in self.prices.get(model, ()):
            if price.valid_from <= ts:
                return price
        return None

    def cost(self, model: str, ts: datetime, input_tokens: int, output_tokens: int,
             cached_tokens: int) -> tuple[Decimal, bool]:
        """(dollars, priced). Cached tokens are part of the input, billed at the cached rate."""
        price = self.price_at(model, ts)
        if price is None:
            return Decimal(0), False
        total = (
            (input_tokens - cached_tokens) * price.input_per_million
            + cached_tokens * price.cached_per_million
            + output_tokens * price.output_per_million
        ) / MILLION
        return total.quantize(Decimal("1e-10")), True

    def sentiment_of(self, emoji: str) -> int:
        value = self.sentiment.get(emoji)
        if value is None:
            value = self.sentiment.get(normalise_emoji(emoji), 0)
        return value

    def is_correction(self, text: str) -> bool:
        text = text.strip()
        return bool(text) and any(p.search(text) for p in self.patterns)


def normalise_emoji(emoji: str) -> str:
    """Drop variation selectors so ❤ and ❤️ are one emoji."""
    return emoji.replace("\ufe0f", "").strip()


_lock = threading.Lock()
_current = Reference()


def load() -> Reference:
    from .models import CorrectionPattern, EmojiSentiment, ModelPrice

    prices: dict[str, list[Price]] = {}
    for row in ModelPrice.objects.order_by("model", "-valid_from"):
        prices.setdefault(row.model, []).append(
            Price(row.valid_from, row.input_per_million, row.output_per_million, row.cached_per_million)
        )
    sentiment: dict[str, int] = {}
    for emoji, value in EmojiSentiment.objects.values_list("emoji", "sentiment"):
        sentiment[emoji] = value
        sentiment.setdefault(normalise_emoji(emoji), value)
    patterns = []
    for pattern in CorrectionPattern.objects.filter(enabled=True).values_list("pattern", flat=True):
        try:
            patterns.append(re.compile(pattern, re.IGNORECASE))
        except re.error:
            continue  # the admin refuses these; a row written otherwise is skipped
    return Reference(prices=prices, sentiment=sentiment, patterns=patterns)


def current() -> Reference:
    """The reference data, reloaded when any process changed it."""
    global _current
    stamp = cache.get(STAMP_KEY)
    if stamp is None:
        stamp = uuid.uuid4().hex
        if not cache.add(STAMP_KEY, stamp, timeout=None):
            stamp = cache.get(STAMP_KEY) or stamp
    if _current.stamp != stamp:
        with _lock:
            if _current.stamp != stamp:
                fresh = load()
                fresh.stamp = stamp
                _current = fresh
    return _current


def _new_stamp() -> None:
    cache.set(STAMP_KEY, uuid.uuid4().hex, timeout=None)


def invalidate(**_kwargs) -> None:
    """Now, and again after the commit (so no process caches the old rows under a new stamp)."""
    from django.db import transaction

    _new_stamp()
    transaction.on_commit(_new_stamp)
