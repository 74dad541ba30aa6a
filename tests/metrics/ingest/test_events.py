"""metrics.ingest.events: validation of one event, one sentence naming the field (pure)."""

from __future__ import annotations

import pytest

from metrics.ingest.events import Invalid, validate_event
from metrics.models import TEXT_LIMIT
from tests.metrics.conftest import followup, reaction, response


def _broken(**changes) -> dict:
    event = response("e1")
    for key, value in changes.items():
        if value is ...:
            event.pop(key)
        else:
            event[key] = value
    return event


CASES = [
    ("not an object", ["a list"], "must be a JSON object"),
    ("missing id", _broken(id=...), "id is required"),
    ("id wrong type", _broken(id=12), "id must be a string"),
    ("id too long", _broken(id="x" * 65), "id is 65 characters long"),
    ("empty id", _broken(id=""), "id must not be empty"),
    ("unknown type", _broken(type="click"), "type must be one of"),
    ("missing ts", _broken(ts=...), "ts is required"),
    ("bad ts", _broken(ts="yesterday"), "ts 'yesterday' is not an RFC 3339"),
    ("naive ts", _broken(ts="2026-03-02T10:00:00"), "has no time zone"),
    ("ts as number", _broken(ts=1700000000), "ts must be an RFC 3339 string"),
    ("ts far future", _broken(ts="2999-01-01T00:00:00Z"), "in the future"),
    ("channel as int", _broken(channel_id=123), "channel_id must be a string"),
    ("channel with spaces", _broken(channel_id="a b"), "channel_id 'a b' is not a channel id"),
    ("missing message_id", _broken(message_id=...), "message_id is required"),
    ("missing variant", _broken(variant=...), "variant is required"),
    ("tokens as string", _broken(input_tokens="500"), "input_tokens must be an integer"),
    ("tokens negative", _broken(output_tokens=-1), "output_tokens must be between 0"),
    ("tokens as bool", _broken(input_tokens=True), "input_tokens must be an integer"),
    ("tokens missing", _broken(output_tokens=...), "output_tokens is required"),
    ("cached > input", _broken(cached_tokens=900), "cached_tokens (900) cannot exceed"),
    ("latency string", _broken(latency_ms="fast"), "latency_ms must be a number"),
    ("latency negative", _broken(latency_ms=-3), "latency_ms must be between 0"),
    ("latency missing", _broken(latency_ms=...), "latency_ms is required"),
    ("error missing", _broken(error=...), "error is required"),
    ("error wrong type", _broken(error=500), "error must be a string"),
    ("cache_hit string", _broken(cache_hit="yes"), "cache_hit must be true, false or null"),
    ("huge model", _broken(model="m" * 10_000), "model is 10000 characters long"),
    ("bad rollout key", _broken(rollout="prompts v2!"), "is not a rollout key"),
    ("NUL in id", _broken(id="a\x00b"), "must not contain NUL"),
    ("reaction bad action", reaction("m1", action="toggle"), "action must be 'add' or 'remove'"),
    ("reaction no emoji", {**reaction("m1"), "emoji": None}, "emoji must be a string"),
    (
        "followup no reply_to",
        {k: v for k, v in followup("m1").items() if k != "reply_to"},
        "reply_to is required",
    ),
    (
        "followup is_correction string",
        followup("m1", is_correction="no"),
        "is_correction must be true",
    ),
]


@pytest.mark.parametrize(("case", "event", "message"), CASES, ids=[c[0] for c in CASES])
def test_validate_event__bad_field__sentence_names_field(case, event, message):
    with pytest.raises(Invalid) as info:
        validate_event(event)
    assert message in str(info.value)
    assert str(info.value).endswith(".")


def test_validate_event__offset_timestamp__normalised_to_utc():
    event = validate_event(_broken(ts="2026-03-02T12:00:00+02:00"))
    assert event.ts.isoformat() == "2026-03-02T10:00:00+00:00"


def test_validate_event__long_texts__truncated_not_refused():
    event = validate_event(_broken(user_text="u" * 50_000, response_text="r" * (TEXT_LIMIT + 1)))
    assert len(event.fields["user_text"]) == TEXT_LIMIT
    assert len(event.fields["response_text"]) == TEXT_LIMIT


def test_validate_event__unknown_keys__ignored():
    assert validate_event(_broken(future_field={"x": 1})).id == "e1"


def test_validate_event__integral_float_tokens__accepted_as_int():
    assert validate_event(_broken(input_tokens=500.0)).fields["input_tokens"] == 500
