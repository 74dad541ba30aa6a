"""The events of POST /api/v1/events as pydantic models (django-ninja ``Schema``), for the
OpenAPI document (bot-contract.md, section 2, "Events").

The models describe; ``metrics.ingest.events.validate_event`` validates. Validating through these
models on the ingest path cost a quarter to a third of the endpoint's throughput in
``bench/ingest_http.py --pydantic`` (django-ninja's Schema runs a Python hook around every
validation; plain pydantic BaseModels with the same fields gave 0.81x and 1.05x, at the edge of
the noise), and pydantic's errors are not the contract's per-event sentences: a validating model
would still need the hand-written validator for every message and for what JSON Schema cannot
say (strict RFC 3339, the time window, lone surrogates, cached <= input). So the hand-written
validator stays and the document is generated from here (bench/README.md, "The events body:
pydantic models").
``tests/metrics/ingest/test_event_schemas.py`` keeps the two in step: the validator reads exactly
the fields documented here, and samples at and past every limit are valid by the document
exactly when the validator accepts them.

Every limit below is the validator's own constant, so a change to one changes both.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ninja import Schema
from ninja.openapi.schema import REF_TEMPLATE, NinjaGenerateJsonSchema
from pydantic import ConfigDict, Field

from rollout.models import CHANNEL_ID_RE

from ..models import TEXT_LIMIT
from .events import KEY_RE, MAX_ID, MAX_LATENCY_MS, MAX_MODEL, MAX_TOKENS

Key = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
"""An id or a short code: 1-64 characters, no NUL, valid Unicode (a lone surrogate is refused)."""
Count = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Text = Annotated[
    str | None,
    Field(description=f"the exchange, for human review; truncated at {TEXT_LIMIT} characters"),
]


class _Event(Schema):
    """What every event has. Unknown keys are ignored (newer bots may send more)."""

    model_config = ConfigDict(extra="allow")

    id: Key = Field(description="the idempotency key: a retried event is counted once")
    ts: str = Field(
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 with a time zone (Z or an offset); from 2015 to a day ahead",
    )
    channel_id: str = Field(
        pattern=CHANNEL_ID_RE,
        min_length=1,
        max_length=MAX_ID,
        description="Discord snowflakes are 17-20 digit numbers, sent as strings",
    )


class ResponseEvent(_Event):
    """One bot reply."""

    type: Literal["response"]
    message_id: Key
    rollout: str = Field(pattern=KEY_RE, min_length=1, max_length=MAX_ID, examples=["prompts_v2"])
    variant: Key = Field(examples=["v1", "v2_full"])
    model: str = Field(min_length=1, max_length=MAX_MODEL, examples=["anthropic/claude-3.5-sonnet"])
    input_tokens: Count
    output_tokens: Count
    cached_tokens: Count | None = Field(0, description="part of the input: at most input_tokens")
    cache_hit: bool | None = None
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS)
    error: Key | None = Field(
        description="null, or a short code such as timeout, rate_limited, provider_error"
    )
    conversation_id: Key | None = None
    user_text: Text = None
    response_text: Text = None


class ReactionEvent(_Event):
    """A user's emoji on a bot reply."""

    type: Literal["reaction"]
    message_id: Key = Field(description="the bot reply")
    emoji: Key
    action: Literal["add", "remove"]
    user_id: Key | None = None


class FollowupEvent(_Event):
    """A user's next message after a bot reply."""

    type: Literal["followup"]
    message_id: Key
    reply_to: Key = Field(description="the bot reply")
    text: Text = None
    is_correction: bool | None = Field(
        None, description="without it, selcontrol decides from text with configurable patterns"
    )


EVENT_MODELS: dict[str, type[_Event]] = {
    "response": ResponseEvent,
    "reaction": ReactionEvent,
    "followup": FollowupEvent,
}
AnyEvent = Annotated[ResponseEvent | ReactionEvent | FollowupEvent, Field(discriminator="type")]


def events_body(max_events: int) -> type[Schema]:
    """The request body, ``{"events": [...]}`` with at most ``max_events`` events."""

    class EventsIn(Schema):
        """A batch of events. No string may hold a NUL character or a lone surrogate (an
        unpaired \\ud800-\\udfff escape): the event holding one is rejected."""

        events: list[AnyEvent] = Field(
            max_length=max_events,
            description="each event accepted, a duplicate, or rejected with a sentence; one bad "
            "event does not sink the rest",
        )

    return EventsIn


def openapi_request_body(model: type[Schema]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the operation's ``requestBody``, the component schemas it refers to) for ``model``, made
    as django-ninja makes the schemas of the bodies it validates."""
    schema = model.model_json_schema(
        ref_template=REF_TEMPLATE, schema_generator=NinjaGenerateJsonSchema
    )
    components = schema.pop("$defs", {})
    components[model.__name__] = schema
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }
    return body, components
