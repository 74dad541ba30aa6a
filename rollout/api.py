"""The rollout part of the bot contract (section 2): decide, config, state, PATCH, rollback,
overrides. Token auth per operation; services do the writes."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal, cast

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import BeforeValidator, StrictBool, StrictInt, WithJsonSchema

from selcontrol.timestamps import parse_rfc3339
from selcontrol_client import assignment

from . import services
from .auth import CONFIG_READ, ROLLOUT_OPERATE, ApiError, AuthenticatedRequest
from .config import get_config, get_rules, wait_for_change
from .models import CHANNEL_ID_RE, AuditEntry, ChannelOverride, Phase, Rollout

router = Router(tags=["rollouts"])

_CHANNEL = re.compile(CHANNEL_ID_RE)


class ErrorOut(Schema):
    error: str


class PhaseOut(Schema):
    order: int
    name: str
    percentage: int
    started_at: datetime | None = Field(
        None, description="When the rollout last entered this phase (null: never)."
    )
    ended_at: datetime | None = Field(
        None, description="When it last left this phase (null: never entered, or current)."
    )
    min_watch_hours: float
    min_watch_ends_at: datetime | None = Field(
        None,
        description="Current phase only: when its minimum watch ends. The watch counts time at "
        "the planned percentage: null while off plan or rolled back.",
    )


StrategyName = Literal["sticky", "daily_rotation"]


class RolloutOut(Schema):
    key: str
    name: str
    enabled: bool
    kill_switch: bool = Field(description="True when the emergency rollback is engaged.")
    percentage: int
    simplified_percentage: int
    strategy: StrategyName
    variants: dict[str, str]
    phase: PhaseOut | None
    phases: list[PhaseOut]
    overrides: int = Field(description="Overrides in effect (expired ones are not counted).")
    off_plan: str = Field(
        "", description="e.g. 'off plan: Full is 100%, serving 20%'; empty when on plan."
    )
    next_phase_gate: list[str] = Field(
        default_factory=list,
        description="What stands between the rollout and its next phase (minimum watch, "
        "checklist, off-plan percentage, success criteria that do not hold); empty: ready.",
    )
    revision: int
    updated_at: datetime


class ConflictOut(Schema):
    error: str
    current: RolloutOut


class DecisionOut(Schema):
    rollout: str
    channel_id: str
    variant: str
    reason: Literal["kill_switch", "override", "percentage", "not_in_rollout"]
    revision: int


class OverrideConfigOut(Schema):
    variant: str
    expires_at: str | None


class RolloutConfigOut(Schema):
    key: str
    enabled: bool
    percentage: int
    simplified_percentage: int
    strategy: Literal["sticky", "daily_rotation"]
    salt: str
    variants: dict[str, str]
    overrides: dict[str, OverrideConfigOut]
    revision: int


class ConfigOut(Schema):
    revision: int
    rollouts: list[RolloutConfigOut]


class RolloutPatch(Schema):
    enabled: StrictBool | None = None
    percentage: StrictInt | None = Field(None, ge=0, le=100)
    simplified_percentage: StrictInt | None = Field(None, ge=0, le=100)
    strategy: Literal["sticky", "daily_rotation"] | None = None
    reason: str = Field(..., min_length=1, max_length=2000)


class ReasonIn(Schema):
    reason: str = Field(..., min_length=1, max_length=2000)


def _rfc3339(value: object) -> object:
    """Strict RFC 3339 within the storable range (pydantic alone takes ISO week dates, basic
    forms and epoch numbers, and any year its datetime holds)."""
    return None if value is None else parse_rfc3339(value, "expires_at")


Rfc3339 = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class OverrideIn(Schema):
    variant: str = Field(..., min_length=1, max_length=64)
    reason: str = Field(..., min_length=1, max_length=2000)
    expires_at: Rfc3339 | None = None


class OverrideOut(Schema):
    rollout: str
    channel_id: str
    variant: str
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revision: int


class DecideQuery(Schema):
    channel_id: str = Field(..., min_length=1, max_length=64, pattern=CHANNEL_ID_RE)


def _phase_spans(rollout: Rollout) -> dict[str, tuple[datetime, datetime | None]]:
    """(entered, left) per phase name, the last time each ran, from the audit log's phase
    changes (a hold is not one)."""
    spans: dict[str, tuple[datetime, datetime | None]] = {}
    current: str | None = None
    entries = (
        AuditEntry.objects.filter(rollout=rollout, action=AuditEntry.Action.PHASE_CHANGE)
        .order_by("created_at", "id")
        .values_list("after", "created_at")
    )
    for after, at in entries:
        name = (after or {}).get("phase")
        if not name or (after or {}).get("decision") == "hold" or name == current:
            continue
        if current in spans:
            spans[current] = (spans[current][0], at)
        spans[name] = (at, None)
        current = name
    return spans


def _phase_out(
    phase: Phase,
    rollout: Rollout | None = None,
    spans: dict[str, tuple[datetime, datetime | None]] | None = None,
) -> PhaseOut:
    entered, left = (spans or {}).get(phase.name, (None, None))
    watch_from = None
    if rollout is not None and rollout.current_phase_id == phase.pk:  # the current phase
        entered, left = entered or rollout.phase_started_at, None
        if rollout.on_plan():
            watch_from = rollout.phase_started_at
    return PhaseOut(
        order=phase.order,
        name=phase.name,
        percentage=phase.percentage,
        started_at=entered,
        ended_at=left,
        min_watch_hours=phase.min_watch.total_seconds() / 3600,
        min_watch_ends_at=watch_from + phase.min_watch if watch_from else None,
    )


def _active_overrides(rollout: Rollout) -> int:
    now = timezone.now()
    return rollout.overrides.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).count()


def rollout_state(rollout: Rollout) -> dict:
    phases = list(rollout.phases.order_by("order"))
    current = next((p for p in phases if p.pk == rollout.current_phase_id), None)
    spans = _phase_spans(rollout)
    nxt = next((p for p in phases if current is None or p.order > current.order), None)
    return json.loads(
        RolloutOut(
            key=rollout.key,
            name=rollout.name,
            enabled=rollout.enabled,
            kill_switch=not rollout.enabled,
            percentage=rollout.percentage,
            simplified_percentage=rollout.simplified_percentage,
            # The column's choices (Rollout.Strategy) are exactly these names; django-stubs types
            # a CharField as str, and RolloutOut validates the value again.
            strategy=cast(StrategyName, rollout.strategy),
            variants={
                "control": rollout.control_variant,
                "treatment": rollout.treatment_variant,
                "simplified": rollout.simplified_variant,
            },
            phase=_phase_out(current, rollout, spans) if current else None,
            phases=[_phase_out(p, rollout, spans) for p in phases],
            overrides=_active_overrides(rollout),
            off_plan=rollout.off_plan(),
            next_phase_gate=services.phase_gate_problems(rollout, nxt) if nxt else [],
            revision=rollout.revision,
            updated_at=rollout.updated_at,
        ).model_dump_json()
    )


def _get_rollout(key: str) -> Rollout:
    rollout = Rollout.objects.select_related("current_phase").filter(key=key).first()
    if rollout is None:
        raise ApiError(404, f"There is no rollout named {key!r}.")
    return rollout


def _state_response(rollout: Rollout, status: int = 200) -> HttpResponse:
    response = HttpResponse(
        json.dumps(rollout_state(rollout)), status=status, content_type="application/json"
    )
    response["ETag"] = f'"{rollout.revision}"'
    return response


def _parse_if_match(request: HttpRequest) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() in ("", "*"):
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise ApiError(
            400,
            f'If-Match must be the rollout\'s revision (e.g. If-Match: "42"); {raw!r} is not.',
        )
    return int(value)


def _actor(request: AuthenticatedRequest) -> services.Actor:
    return services.Actor(name=f"token:{request.auth.name}", via="api")


class ConfigQuery(Schema):
    wait: float = Field(
        0,
        ge=0,
        le=300,
        description="Long-poll: with If-None-Match set to the current ETag, hold the request "
        "until the config changes or this many seconds pass (at most 25), then answer 200 or 304.",
    )


def _etag_matches(request: HttpRequest, etag: str) -> bool:
    if_none_match = request.headers.get("If-None-Match", "")
    return etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]


@router.get(
    "/config",
    auth=CONFIG_READ,
    response={200: ConfigOut, 304: None, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut},
)
def config(request: HttpRequest, query: Query[ConfigQuery]):
    """Everything an SDK needs to decide locally. Send the last ETag as If-None-Match: 304 means
    nothing changed. Add ?wait=N to be answered as soon as it changes (long-poll)."""
    revision, document = get_config()
    etag = f'"{revision}"'
    if query.wait > 0 and _etag_matches(request, etag):
        wait_for_change(revision, query.wait)
        revision, document = get_config()
        etag = f'"{revision}"'
    if _etag_matches(request, etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(json.dumps(document), content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


@router.get(
    "/rollouts", auth=CONFIG_READ, response={200: list[RolloutOut], 401: ErrorOut, 403: ErrorOut}
)
def list_rollouts(request: HttpRequest):
    """All rollouts with their state."""
    return [rollout_state(r) for r in Rollout.objects.select_related("current_phase")]


@router.get(
    "/rollouts/{key}/decide",
    auth=CONFIG_READ,
    response={200: DecisionOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
)
def decide(request: HttpRequest, key: str, query: Query[DecideQuery]):
    """Which variant a channel gets, and why (the same rule the client applies locally)."""
    rule = get_rules().get(key)
    if rule is None:
        raise ApiError(404, f"There is no rollout named {key!r}.")
    variant, reason = assignment.decide(rule, query.channel_id, timezone.now())
    return {
        "rollout": key,
        "channel_id": query.channel_id,
        "variant": variant,
        "reason": reason,
        "revision": rule.revision,
    }


@router.get(
    "/rollouts/{key}",
    auth=CONFIG_READ,
    response={200: RolloutOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
)
def get_rollout(request: HttpRequest, key: str):
    """The rollout's state; its ETag is the revision to send back as If-Match."""
    return _state_response(_get_rollout(key))


@router.patch(
    "/rollouts/{key}",
    auth=ROLLOUT_OPERATE,
    response={
        200: RolloutOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        409: ConflictOut,
        422: ErrorOut,
        428: ErrorOut,
    },
)
def patch_rollout(request: AuthenticatedRequest, key: str, payload: RolloutPatch):
    """Change any of enabled, percentage, simplified_percentage, strategy, with a reason.
    With If-Match: <revision>, a stale write gets 409 and the current state. Turning a rollout
    whose kill switch is on back on (`enabled: true`) needs If-Match: without it, 428."""
    expected = _parse_if_match(request)
    changes = payload.model_dump(exclude_unset=True, exclude={"reason"})
    changes = {k: v for k, v in changes.items() if v is not None}
    rollout = services.update_rollout(
        _get_rollout(key),
        actor=_actor(request),
        reason=payload.reason,
        expected_revision=expected,
        release_needs_revision=True,
        **changes,
    )
    return _state_response(rollout)


@router.post(
    "/rollouts/{key}/rollback",
    auth=ROLLOUT_OPERATE,
    response={
        200: RolloutOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        422: ErrorOut,
    },
)
def rollback(request: AuthenticatedRequest, key: str, payload: ReasonIn):
    """The emergency rollback: kill switch on, every channel to the control variant."""
    rollout = services.engage_kill_switch(
        _get_rollout(key), actor=_actor(request), reason=payload.reason
    )
    return _state_response(rollout)


def _override_out(o: ChannelOverride) -> dict:
    return {
        "rollout": o.rollout.key,
        "channel_id": o.channel_id,
        "variant": o.variant,
        "reason": o.reason,
        "created_by": o.created_by,
        "created_at": o.created_at,
        "expires_at": o.expires_at,
        "revision": o.rollout.revision,
    }


def _check_channel(channel_id: str) -> str:
    if not _CHANNEL.match(channel_id):
        raise ApiError(
            400,
            f"{channel_id[:80]!r} is not a channel id; use the channel's numeric Discord id.",
        )
    return channel_id


@router.get(
    "/rollouts/{key}/overrides",
    auth=CONFIG_READ,
    response={200: list[OverrideOut], 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
)
def list_overrides(request: HttpRequest, key: str):
    """Every channel override of the rollout, expired ones included (see expires_at)."""
    rollout = _get_rollout(key)
    return [_override_out(o) for o in rollout.overrides.select_related("rollout")]


@router.put(
    "/rollouts/{key}/overrides/{channel_id}",
    auth=ROLLOUT_OPERATE,
    response={
        200: OverrideOut,
        201: OverrideOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        422: ErrorOut,
    },
)
def put_override(request: AuthenticatedRequest, key: str, channel_id: str, payload: OverrideIn):
    """Force a channel to a variant (below the kill switch, above the percentage)."""
    _check_channel(channel_id)
    override, created = services.set_override(
        _get_rollout(key),
        channel_id,
        variant=payload.variant,
        reason=payload.reason,
        expires_at=payload.expires_at,
        actor=_actor(request),
    )
    override.rollout.refresh_from_db(fields=["revision"])
    return Status(201 if created else 200, _override_out(override))


@router.delete(
    "/rollouts/{key}/overrides/{channel_id}",
    auth=ROLLOUT_OPERATE,
    response={204: None, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def delete_override(
    request: AuthenticatedRequest,
    key: str,
    channel_id: str,
    reason: str = "Removed through the API",
):
    """Remove a channel's override; the percentage rule applies to it again."""
    _check_channel(channel_id)
    removed = services.remove_override(
        _get_rollout(key), channel_id, actor=_actor(request), reason=reason
    )
    if not removed:
        raise ApiError(404, f"Channel {channel_id} has no override in {key}.")
    return Status(204, None)
