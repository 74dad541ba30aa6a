"""Validation of the events the bot sends (bot-contract.md, section 2), pure: no database.

``validate_event(raw)`` returns a normalised event or one sentence naming the field that is
wrong. Unknown keys are ignored (newer bots may send more). Long free text (``user_text``,
``response_text``, follow-up ``text``) is truncated at ``TEXT_LIMIT`` characters, not refused.
A string holding a lone surrogate (``"\\ud800"`` is valid JSON but not Unicode: it cannot be
encoded as UTF-8, so PostgreSQL could never take it) is refused, whatever the field; ``ts`` is
strict RFC 3339 (selcontrol.timestamps).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from rollout.models import CHANNEL_ID_RE
from selcontrol.timestamps import BadTimestamp, parse_rfc3339

from ..models import TEXT_LIMIT

TYPES = ("response", "reaction", "followup")
MAX_ID = 64
MAX_MODEL = 128
MAX_TOKENS = 10**9
MAX_LATENCY_MS = 24 * 3600 * 1000.0
MAX_FUTURE = timedelta(days=1)
MIN_TS = datetime(2015, 1, 1, tzinfo=UTC)
_CHANNEL = re.compile(CHANNEL_ID_RE)
KEY_RE = r"^[-a-zA-Z0-9_]{1,64}$"
_KEY = re.compile(KEY_RE)


class Invalid(Exception):
    """One sentence naming the field."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us more per event
class Event:
    id: str
    type: str
    ts: datetime
    channel_id: str
    fields: dict[str, Any]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_MISSING = object()


def _unencodable(value: str) -> bool:
    """True when value holds a lone surrogate. ASCII strings (most ids) answer in O(1)."""
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_surrogates(name: str, value: str) -> str:
    if _unencodable(value):
        raise Invalid(
            f"{name} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not "
            "text; send valid UTF-8."
        )
    return value


@overload
def _string(
    data: dict,
    name: str,
    *,
    required: Literal[True] = ...,
    max_len: int = ...,
    nullable: Literal[False] = ...,
) -> str: ...  # required and not nullable: a string, or Invalid


@overload
def _string(
    data: dict, name: str, *, required: bool = ..., max_len: int = ..., nullable: bool = ...
) -> str | None: ...


def _string(
    data: dict, name: str, *, required: bool = True, max_len: int = MAX_ID, nullable: bool = False
) -> str | None:
    value = data.get(name, _MISSING)
    if type(value) is str and 0 < len(value) <= max_len and "\x00" not in value and value.isascii():
        return value  # the usual case, checked first (ingest validates ~8 strings per event)
    if name not in data or (data[name] is None and nullable):
        if required and name not in data:
            raise Invalid(f"{name} is required.")
        if required and not nullable:
            raise Invalid(f"{name} must not be null.")
        return None
    value = data[name]
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string; got {type(value).__name__} {_show(value)}.")
    if not value:
        raise Invalid(f"{name} must not be empty.")
    if len(value) > max_len:
        raise Invalid(f"{name} is {len(value)} characters long; the limit is {max_len}.")
    if "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters.")
    return _no_surrogates(name, value)


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string or null; got {type(value).__name__}.")
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _no_surrogates(name, value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT])


@overload
def _integer(data: dict, name: str, *, required: Literal[True] = ...) -> int: ...


@overload
def _integer(data: dict, name: str, *, required: bool = ...) -> int | None: ...


def _integer(data: dict, name: str, *, required: bool = True) -> int | None:
    value = data.get(name)
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value  # the usual case
    if name not in data or data[name] is None:
        if required:
            raise Invalid(f"{name} is required (an integer >= 0).")
        return None
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise Invalid(f"{name} must be an integer >= 0; got {_show(value)}.")
    if value < 0 or value > MAX_TOKENS:
        raise Invalid(f"{name} must be between 0 and {MAX_TOKENS}; got {value}.")
    return value


def _boolean(data: dict, name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true, false or null; got {_show(value)}.")
    return value


def parse_ts(value: Any, name: str = "ts", now: datetime | None = None) -> datetime:
    if value is None:
        raise Invalid(f"{name} is required (an RFC 3339 timestamp with a time zone).")
    try:
        parsed = parse_rfc3339(value, name)
    except BadTimestamp as exc:
        raise Invalid(str(exc)) from None
    now = now or datetime.now(UTC)
    if parsed > now + MAX_FUTURE:
        raise Invalid(
            f"{name} {_show(value)} is more than a day in the future; check the bot's clock."
        )
    if parsed < MIN_TS:
        raise Invalid(f"{name} {_show(value)} is before 2015.")
    return parsed


def _response(data: dict) -> dict[str, Any]:
    rollout = _string(data, "rollout")
    if not _KEY.match(rollout):
        raise Invalid(f"rollout {_show(rollout)} is not a rollout key (letters, digits, - and _).")
    input_tokens = _integer(data, "input_tokens")
    cached = _integer(data, "cached_tokens", required=False) or 0
    if cached > input_tokens:
        raise Invalid(
            f"cached_tokens ({cached}) cannot exceed input_tokens ({input_tokens}); "
            "cached tokens are part of the input."
        )
    if "latency_ms" not in data or data["latency_ms"] is None:
        raise Invalid("latency_ms is required (a number >= 0).")
    latency = data["latency_ms"]
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise Invalid(f"latency_ms must be a number >= 0; got {_show(latency)}.")
    if not math.isfinite(latency) or latency < 0 or latency > MAX_LATENCY_MS:
        raise Invalid(f"latency_ms must be between 0 and {int(MAX_LATENCY_MS)}; got {latency}.")
    if "error" not in data:
        raise Invalid("error is required: null, or a short code such as 'timeout'.")
    return {
        "message_id": _string(data, "message_id"),
        "rollout_key": rollout,
        "variant": _string(data, "variant"),
        "model": _string(data, "model", max_len=MAX_MODEL),
        "input_tokens": input_tokens,
        "output_tokens": _integer(data, "output_tokens"),
        "cached_tokens": cached,
        "cache_hit": _boolean(data, "cache_hit"),
        "latency_ms": float(latency),
        "error": _string(data, "error", required=False, nullable=True),
        "conversation_id": _string(data, "conversation_id", required=False, nullable=True) or "",
        "user_text": _text(data, "user_text"),
        "response_text": _text(data, "response_text"),
    }


def _reaction(data: dict) -> dict[str, Any]:
    action = data.get("action")
    if action not in ("add", "remove"):
        raise Invalid(f"action must be 'add' or 'remove'; got {_show(action)}.")
    return {
        "message_id": _string(data, "message_id"),
        "emoji": _string(data, "emoji"),
        "action": action,
        "user_id": _string(data, "user_id", required=False, nullable=True) or "",
    }


def _followup(data: dict) -> dict[str, Any]:
    return {
        "message_id": _string(data, "message_id"),
        "reply_to": _string(data, "reply_to"),
        "text": _text(data, "text"),
        "is_correction": _boolean(data, "is_correction"),
    }


_BY_TYPE = {"response": _response, "reaction": _reaction, "followup": _followup}


def validate_event(raw: Any, now: datetime | None = None) -> Event:
    """The normalised event, or raise Invalid with one sentence naming the field."""
    if not isinstance(raw, dict):
        raise Invalid(f"An event must be a JSON object; got {type(raw).__name__}.")
    event_id = _string(raw, "id")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _BY_TYPE:
        raise Invalid(f"type must be one of response, reaction, followup; got {_show(kind)}.")
    ts = parse_ts(raw.get("ts"), "ts", now)
    channel_id = _string(raw, "channel_id")
    if not _CHANNEL.match(channel_id):
        raise Invalid(
            f"channel_id {_show(channel_id)} is not a channel id (Discord ids are digits)."
        )
    return Event(id=event_id, type=kind, ts=ts, channel_id=channel_id, fields=_BY_TYPE[kind](raw))


def event_id_of(raw: Any) -> str | None:
    """The id to echo in a rejection: the event's id when it is a usable string."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        event_id = raw["id"][:MAX_ID]
        return None if _unencodable(event_id) else event_id
    return None
