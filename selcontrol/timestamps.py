"""Timestamps at the edge: strict RFC 3339 in, and only times the whole stack can read back.

``parse_rfc3339`` accepts exactly RFC 3339's ``date-time`` (section 5.6): ``YYYY-MM-DD``, ``T``
(or ``t``, or a space as its note allows), ``hh:mm:ss``, optional fraction, and ``Z``/``z`` or
``+hh:mm``/``-hh:mm``. ISO 8601's other forms (week dates ``2025-W23-1``, ordinal dates, the
basic ``20250601T120000Z``, a missing zone) are refused with a sentence, where Python's
``fromisoformat`` would take them.

``check_storable`` refuses a time whose UTC value is outside ``STORABLE_MIN..STORABLE_MAX``.
PostgreSQL stores far wider ranges than Python's ``datetime`` (years 1-9999) can read back:
``9999-12-31T23:59:59-14:00`` is year 10000 in UTC, which psycopg cannot return, so one such
row made every page and API call that read it fail. The bounds keep a day's margin inside
years 1-9999 so that the time can also be shown in any time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

STORABLE_MIN = datetime(1, 1, 2, tzinfo=UTC)
STORABLE_MAX = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_NO_ZONE = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?", re.ASCII)
EXAMPLE = "2025-01-31T12:00:00Z"


class BadTimestamp(ValueError):
    """One sentence naming the field."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_rfc3339(value: object, name: str) -> datetime:
    """``value`` as an aware datetime in UTC, or BadTimestamp with a sentence naming ``name``.

    The result is always within STORABLE_MIN..STORABLE_MAX.
    """
    if not isinstance(value, str):
        raise BadTimestamp(
            f"{name} must be an RFC 3339 string such as {EXAMPLE}; got {_show(value)}."
        )
    match = _RFC3339.fullmatch(value) if len(value) <= 40 else None
    if match is None:
        if len(value) <= 40 and _NO_ZONE.fullmatch(value):
            raise BadTimestamp(
                f"{name} {_show(value)} has no time zone; add Z or an offset such as +00:00."
            )
        raise BadTimestamp(
            f"{name} {_show(value)} is not an RFC 3339 timestamp such as {EXAMPLE} "
            "(date, T, time, and Z or an offset such as +02:00)."
        )
    try:
        # The pattern let through RFC 3339 only; fromisoformat (C, ~0.1 us) reads it. Its lower
        # case t and z are the only letters the pattern allows, and fromisoformat wants upper.
        local = datetime.fromisoformat(value if value.isupper() else value.upper())
    except ValueError:
        raise BadTimestamp(
            f"{name} {_show(value)} is not an RFC 3339 timestamp: there is no such date or "
            "time (check the month, day, hour and minute)."
        ) from None
    return check_storable(local, name, shown=value)


def check_storable(value: datetime, name: str, *, shown: str | None = None) -> datetime:
    """``value`` (aware) in UTC, or BadTimestamp when its UTC value is outside the storable
    range."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not STORABLE_MIN <= utc <= STORABLE_MAX:
        raise BadTimestamp(
            f"{name} {_show(shown if shown is not None else value.isoformat())} is outside the "
            f"times selcontrol can keep: its UTC value must fall between "
            f"{STORABLE_MIN.date().isoformat()} and {STORABLE_MAX.date().isoformat()}."
        )
    return utc
