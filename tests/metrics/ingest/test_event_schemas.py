"""The events body in the OpenAPI document (generated from metrics.ingest.schemas' models) and the
hand-written validator that runs (metrics.ingest.events) agree: every field the validator reads is
in the document, and samples at and past every limit are valid by one exactly when they are valid
by the other. What the document cannot say (the validator is stricter there) is listed, each
with the reason the document gives."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from metrics.ingest.events import MAX_LATENCY_MS, MAX_TOKENS, Invalid, validate_event
from metrics.models import TEXT_LIMIT
from selcontrol.api import api

DOCUMENT = api.get_openapi_schema()
BODY = DOCUMENT["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]
COMPONENTS = DOCUMENT["components"]["schemas"]
BODY_VALIDATOR = jsonschema_rs.Draft202012Validator(
    {**BODY["schema"], "components": {"schemas": COMPONENTS}}, validate_formats=True
)
TS = "2026-03-02T10:00:00Z"
NOW = None  # validate_event's own clock: TS is in the past

FULL: dict[str, dict[str, Any]] = {
    "response": {
        "id": "r-1",
        "type": "response",
        "ts": TS,
        "channel_id": "123456789012345678",
        "message_id": "m-1",
        "rollout": "prompts_v2",
        "variant": "v1",
        "model": "anthropic/claude-3.5-sonnet",
        "input_tokens": 500,
        "output_tokens": 200,
        "cached_tokens": 100,
        "cache_hit": True,
        "latency_ms": 1200.5,
        "error": None,
        "conversation_id": "c-1",
        "user_text": "who wrote dune?",
        "response_text": "Frank Herbert.",
    },
    "reaction": {
        "id": "x-1",
        "type": "reaction",
        "ts": TS,
        "channel_id": "123456789012345678",
        "message_id": "m-1",
        "emoji": "👍",
        "action": "add",
        "user_id": "u1",
    },
    "followup": {
        "id": "f-1",
        "type": "followup",
        "ts": TS,
        "channel_id": "123456789012345678",
        "message_id": "um-1",
        "reply_to": "m-1",
        "text": "actually, no",
        "is_correction": True,
    },
}
MODEL_OF = {"response": "ResponseEvent", "reaction": "ReactionEvent", "followup": "FollowupEvent"}


def by_document(event: Any) -> bool:
    return BODY_VALIDATOR.is_valid({"events": [event]})


def by_validator(event: Any) -> bool:
    try:
        validate_event(event, NOW)
    except Invalid:
        return False
    return True


class Reading(dict):
    """An event that records which keys the validator reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


@pytest.mark.parametrize("kind", FULL)
def test_document__every_field_the_validator_reads__and_no_other(kind):
    event = Reading(FULL[kind])
    validate_event(event)
    properties = COMPONENTS[MODEL_OF[kind]]["properties"]
    assert event.read == set(properties) == set(FULL[kind])


@pytest.mark.parametrize("kind", FULL)
def test_full_events__valid_by_both(kind):
    assert by_validator(FULL[kind]) and by_document(FULL[kind])
    assert by_document({**FULL[kind], "sent_by": "a newer bot"})  # unknown keys: ignored by both
    assert by_validator({**FULL[kind], "sent_by": "a newer bot"})


MISSING = object()
VALUES: list[Any] = [
    MISSING,
    None,
    "",
    "x",
    "x" * 64,
    "x" * 65,
    "m" * 128,
    "m" * 129,
    "t" * (TEXT_LIMIT + 10),  # texts are truncated, not refused
    "a b",
    "a/b",
    "prompts-v2_B",
    "👍",
    "add",
    "remove",
    "toggle",
    "response",
    "reaction",
    "followup",
    "12",
    0,
    5,
    5.0,
    1.5,
    -1,
    -0.5,
    MAX_TOKENS,
    MAX_TOKENS + 1,
    MAX_LATENCY_MS,
    MAX_LATENCY_MS + 1,
    True,
    False,
    [1],
    {"a": 1},
]


def _samples():
    for kind, full in FULL.items():
        for field in full:
            if field == "ts":
                continue  # below: the document's format is RFC 3339's, the window is not
            for value in VALUES:
                event = dict(full)
                if value is MISSING:
                    del event[field]
                else:
                    event[field] = value
                if field == "cached_tokens":  # cached <= input: below
                    event["input_tokens"] = MAX_TOKENS
                if field == "input_tokens":
                    event["cached_tokens"] = 0
                yield pytest.param(event, id=f"{kind}-{field}-{value!r:.20}")


@pytest.mark.parametrize("event", list(_samples()))
def test_sample__valid_by_the_validator_exactly_when_valid_by_the_document(event):
    assert by_validator(event) == by_document(event)


@pytest.mark.parametrize(
    "ts", [TS, "2026-03-02t10:00:00.123+02:00", 1700000000, None, "yesterday", "2026-03-02"]
)
def test_ts__valid_by_the_validator_exactly_when_valid_by_the_document(ts):
    event = {**FULL["reaction"], "ts": ts}
    assert by_validator(event) == by_document(event)


@pytest.mark.parametrize(
    "changes",
    [
        {"ts": "2014-12-31T23:59:59Z"},  # "from 2015 to a day ahead"
        {"ts": "2999-01-01T00:00:00Z"},
        {"cached_tokens": 501, "input_tokens": 500},  # "at most input_tokens"
        {"message_id": "a\x00b"},  # "no NUL, no lone surrogate" (EventsIn's description)
        {"variant": "v\ud800"},
    ],
)
def test_validator__stricter_where_the_document_says_so_in_words(changes):
    event = {**FULL["response"], **changes}
    assert by_document(event) and not by_validator(event)


def test_document__batch_limit_is_the_endpoint_s():
    from metrics.api import MAX_EVENTS

    assert COMPONENTS["EventsIn"]["properties"]["events"]["maxItems"] == MAX_EVENTS
