"""The dashboard's inputs: the GET parameters its page, fragments and data endpoints share (range,
custom start and end, granularity, compare), read by one Django form.

Each refusal is one sentence naming the field, as the page shows it beside the controls and the
data endpoints answer it as ``{"error": ...}`` (metrics.dashboard.views.parse_params). Values are
taken as sent (no stripping): what the sentence quotes is what was asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.utils import timezone

from rollout.models import Rollout

from . import series


def auto_granularity(since: datetime, until: datetime) -> str:
    """By hour up to 7 days, by day beyond: "30 days" is 30 points a line, not 720."""
    return "day" if until - since > series.RANGES["7d"] else "hour"


def _parse_when(value: str, name: str, *, end: bool = False) -> datetime:
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            moment = datetime.combine(day, time.max if end else time.min)
            parsed = moment.replace(tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(value)
            aware = parsed.tzinfo is not None
            parsed = parsed.astimezone(UTC) if aware else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise forms.ValidationError(
            f"{name} {value[:40]!r} is not a date (YYYY-MM-DD) or a date and time."
        ) from None
    return _within_data_years(parsed, name, value)


def _within_data_years(moment: datetime, name: str, shown: str) -> datetime:
    """Refuse dates no event can have (events are 2015 to a day ahead): a range at the edge of
    the calendar has nothing to show and would overflow the hour arithmetic behind it."""
    first, last = datetime(2015, 1, 1, tzinfo=UTC), timezone.now() + series.MAX_RANGE
    if not first <= moment <= last:
        raise forms.ValidationError(
            f"{name} {shown[:40]!r} is outside the dates selcontrol can have data for "
            f"({first:%Y-%m-%d} to {last:%Y-%m-%d})."
        )
    return moment


def _raw() -> forms.CharField:
    return forms.CharField(required=False, strip=False)


class DashboardForm(forms.Form):
    """``cleaned_data`` holds the range's name, ``since`` and ``until`` (resolved), the
    ``granularity`` asked for (``auto`` included) and ``compare``; ``resolved_granularity()``
    is the one the figures use. A request with several problems is told the first in the order
    the controls read: ``window_problem`` (the range, its dates, the granularity), then
    ``compare_problem``."""

    range = _raw()
    start = _raw()
    end = _raw()
    granularity = _raw()
    compare = _raw()

    def __init__(self, data: Any, *, rollout: Rollout, now: datetime | None = None) -> None:
        super().__init__(data)
        self.rollout = rollout
        self.now = now

    def clean_range(self) -> str:
        name = self.cleaned_data["range"] or "24h"
        if name not in (*series.RANGES, "custom"):
            raise forms.ValidationError(
                f"range must be one of 24h, 7d, 30d or custom; got {name!r}."
            )
        return name

    def clean_granularity(self) -> str:
        choice = self.cleaned_data["granularity"] or "auto"
        if choice not in ("auto", *series.GRANULARITIES):
            raise forms.ValidationError(f"granularity must be auto, hour or day; got {choice!r}.")
        return choice

    def clean_compare(self) -> str:
        compare = self.cleaned_data["compare"]
        if compare and compare not in self.rollout.variants:
            raise forms.ValidationError(
                f"compare must be one of {', '.join(self.rollout.variants[1:])}; got {compare!r}."
            )
        return compare

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        name = data.get("range")
        if name is None:  # refused above
            return data
        if name != "custom":
            data["since"], data["until"] = series.resolve_range(name, now=self.now)
            return data
        start, end = data.get("start", ""), data.get("end", "")
        if not start or not end:
            raise forms.ValidationError("A custom range needs both start and end (YYYY-MM-DD).")
        since, until = series.resolve_range(
            "custom", start=_parse_when(start, "start"), end=_parse_when(end, "end", end=True)
        )
        if until <= since:
            raise forms.ValidationError("end must be after start.")
        if until - since > series.MAX_RANGE:
            raise forms.ValidationError(
                f"The range is limited to {series.MAX_RANGE.days} days; choose a later start."
            )
        data["since"], data["until"] = since, until
        return data

    def window_problem(self) -> str | None:
        """The first problem with the window asked for: the range, its dates (the form's own
        errors), the granularity; None when there is none."""
        return self._first_problem("range", NON_FIELD_ERRORS, "granularity")

    def compare_problem(self) -> str | None:
        return self._first_problem("compare")

    def _first_problem(self, *names: str) -> str | None:
        errors = self.errors
        for name in names:
            if name in errors:
                return str(errors[name][0])
        return None

    def resolved_granularity(self) -> str:
        choice = self.cleaned_data["granularity"]
        if choice != "auto":
            return choice
        return auto_granularity(self.cleaned_data["since"], self.cleaned_data["until"])
