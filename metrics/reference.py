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
from collections.abc import Sequence
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
    _aliases: dict[str, list[Price]] | None = None

    def price_at(self, model: str, ts: datetime) -> Price | None:
        """The price of ``model`` at ``ts``: the model's own rows, else the rows of the one
        priced model that is the same model written another way (see ``model_key``)."""
        rows: Sequence[Price] | None = self.prices.get(model)
        if rows is None:
            rows = self.aliases().get(model_key(model), ())
        for price in rows:
            if price.valid_from <= ts:
                return price
        return None

    def aliases(self) -> dict[str, list[Price]]:
        """``model_key`` -> price rows, for keys whose priced models agree on their price (one
        model, or several spellings with the same current rates); a key that would pick
        between different prices prices nothing."""
        if self._aliases is None:
            by_key: dict[str, list[str]] = {}
            for name in sorted(self.prices):
                by_key.setdefault(model_key(name), []).append(name)
            self._aliases = {}
            for key, names in by_key.items():
                rates = {_rates(self.prices[n][0]) for n in names if self.prices[n]}
                if len(rates) == 1:
                    self._aliases[key] = self.prices[names[0]]
        return self._aliases

    def cost(
        self, model: str, ts: datetime, input_tokens: int, output_tokens: int, cached_tokens: int
    ) -> tuple[Decimal, bool]:
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
        """+1, -1 or 0: the emoji's row, else its normalised form's, else the ``*`` row (every
        other emoji; the bot's rule: negative), else neutral."""
        value = self.sentiment.get(emoji)
        if value is None:
            value = self.sentiment.get(normalise_emoji(emoji))
        if value is None:
            value = self.sentiment.get(OTHER_EMOJI, 0)
        return value

    def is_correction(self, text: str) -> bool:
        text = text.strip()
        return bool(text) and any(p.search(text) for p in self.patterns)


def _rates(price: Price) -> tuple[Decimal, Decimal, Decimal]:
    return price.input_per_million, price.output_per_million, price.cached_per_million


OTHER_EMOJI = "*"
"""The ``EmojiSentiment`` row that classifies every emoji not listed (custom emoji included)."""

_EMOJI_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def normalise_emoji(emoji: str) -> str:
    """Drop variation selectors and skin tones, so ❤ and ❤️ are one emoji, and 👍🏽 is 👍."""
    return _EMOJI_MODIFIERS.sub("", emoji).strip()


_DATE_SUFFIX = re.compile(r"-(?:20\d{2}-?\d{2}-?\d{2}|latest)$")


def model_key(model: str) -> str:
    """One spelling for the ways a model id is written: OpenRouter's ``vendor/model`` and the
    bare model, ``3.5`` and ``3-5``, a ``:variant`` suffix (``:beta``), a dated snapshot and
    its undated name. ``anthropic/claude-3-5-sonnet-20241022``, ``claude-3.5-sonnet`` and
    ``anthropic/claude-3.5-sonnet:beta`` are one key. Used only when the exact id has no price,
    and only when the key names one priced model (an exact row always wins)."""
    key = model.strip().lower().split(":", 1)[0]
    key = key.rsplit("/", 1)[-1].replace(".", "-").replace("_", "-")
    return _DATE_SUFFIX.sub("", key)


_lock = threading.Lock()
_current = Reference()


def load() -> Reference:
    from .models import CorrectionPattern, EmojiSentiment, ModelPrice

    prices: dict[str, list[Price]] = {}
    for row in ModelPrice.objects.order_by("model", "-valid_from"):
        prices.setdefault(row.model, []).append(
            Price(
                row.valid_from,
                row.input_per_million,
                row.output_per_million,
                row.cached_per_million,
            )
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
