"""Events and summaries: POST /api/v1/events, GET /api/v1/rollouts/<key>/summary
(bot-contract.md, section 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema

from rollout.auth import CONFIG_READ, EVENTS_WRITE, ApiError
from rollout.models import Rollout

from . import selectors
from .ingest import schemas
from .ingest.events import Invalid, parse_ts
from .ingest.intake import record_events

router = Router(tags=["events"])

MAX_BODY_BYTES = settings.SELCONTROL_EVENTS_MAX_BYTES
MAX_EVENTS = settings.SELCONTROL_EVENTS_MAX_BATCH
DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=400)


class ErrorOut(Schema):
    error: str


class RejectedOut(Schema):
    index: int
    id: str | None
    error: str


class EventsOut(Schema):
    accepted: int
    duplicates: int
    rejected: list[RejectedOut]


class LatencyOut(Schema):
    p50: float | None
    p95: float | None
    p99: float | None


class VariantSummaryOut(Schema):
    responses: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: LatencyOut
    reactions: dict[str, int]
    corrections: int
    reviews: dict[str, int]
    errors_by_code: dict[str, int]
    cached_tokens: int
    unpriced_responses: int
    followups: int
    cache_hit_rate: float | None
    engagement: dict[str, Any] | None


class SummaryOut(Schema):
    rollout: str
    since: str
    until: str
    variants: dict[str, VariantSummaryOut]


EventsIn = schemas.events_body(MAX_EVENTS)
_EVENTS_BODY, COMPONENT_SCHEMAS = schemas.openapi_request_body(EventsIn)
"""The events body in the OpenAPI document, generated from metrics.ingest.schemas' models, and
the component schemas it refers to (selcontrol.api adds them to the document). The view reads
the body itself: ninja does not validate it (see metrics.ingest.schemas for why)."""


def _read_body(request: HttpRequest) -> bytes:
    """The body, refused with 413 past MAX_BODY_BYTES before it is read or parsed."""
    limit_mib = MAX_BODY_BYTES / (1024 * 1024)
    too_big = (
        f"The body is larger than {limit_mib:g} MiB; send at most {MAX_EVENTS} events "
        f"and {limit_mib:g} MiB per request."
    )
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, too_big)
    if hasattr(request, "_body"):
        body = request._body
    else:
        body = request.read(MAX_BODY_BYTES + 1)  # not request.body: its own limit is smaller
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, too_big)
    return body


def _parse_events(body: bytes) -> list[Any]:
    if not body.strip():
        raise ApiError(400, 'The request body is empty; send {"events": [...]}.')
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, f"The request body is not valid JSON ({exc}); nothing was stored."
        ) from None
    if not isinstance(data, dict) or "events" not in data:
        raise ApiError(400, 'The body must be a JSON object {"events": [...]}; nothing was stored.')
    events = data["events"]
    if not isinstance(events, list):
        raise ApiError(
            400,
            f"events must be a list of event objects, not {type(events).__name__}; nothing was "
            "stored.",
        )
    if len(events) > MAX_EVENTS:
        raise ApiError(
            413, f"A batch holds at most {MAX_EVENTS} events; this one has {len(events)}. Split it."
        )
    return events


@router.post(
    "/events",
    auth=EVENTS_WRITE,
    response={200: EventsOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 413: ErrorOut},
    openapi_extra={"requestBody": _EVENTS_BODY},
)
def post_events(request: HttpRequest):
    """A batch of events (response, reaction, followup). Each event is accepted, a duplicate
    (its id was seen before: counted once), or rejected with a sentence; a body that is not
    `{"events": [...]}` is refused whole with 400, a body past the limit with 413."""
    events = _parse_events(_read_body(request))
    result = record_events(events)
    return HttpResponse(json.dumps(result.as_dict()), content_type="application/json")


def _time_param(request: HttpRequest, name: str) -> datetime | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_ts(raw, name, now=datetime.now(UTC) + MAX_WINDOW)
    except Invalid as exc:
        raise ApiError(400, str(exc)) from None


@router.get(
    "/rollouts/{key}/summary",
    auth=CONFIG_READ,
    response={200: SummaryOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
)
def summary(request: HttpRequest, key: str, since: str | None = None, until: str | None = None):
    """Per-variant figures of the replies with since <= ts < until (default: the last 24 hours).
    Counts and token sums are exact and include events accepted a moment ago."""
    if not Rollout.objects.filter(key=key).exists():
        raise ApiError(404, f"There is no rollout named {key!r}.")
    until_ts = _time_param(request, "until") or datetime.now(UTC)
    since_ts = _time_param(request, "since") or until_ts - DEFAULT_WINDOW
    if since_ts >= until_ts:
        raise ApiError(400, "since must be earlier than until.")
    if until_ts - since_ts > MAX_WINDOW:
        raise ApiError(400, f"since..until spans more than {MAX_WINDOW.days} days; ask for less.")
    body = selectors.summary(key, since_ts, until_ts)
    return HttpResponse(json.dumps(body), content_type="application/json")
