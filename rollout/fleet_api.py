"""The fleet part of the API: each bot instance reports what it serves; operators read the fleet.

``POST /api/v1/instances/report`` takes the ``events:write`` scope: a report is telemetry the bot
writes, like its events, and read-only tokens (``config:read``, given to dashboards and chat-ops
lookups) should not be able to invent instances or decisions. The bot's token has both scopes.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema

from . import fleet
from .auth import CONFIG_READ, EVENTS_WRITE, ApiError, AuthenticatedRequest

logger = logging.getLogger("selcontrol.fleet")

router = Router(tags=["fleet"])

INSTANCE_ID_RE = r"^[0-9A-Za-z_.:-]{1,100}$"
KEY_RE = r"^[0-9A-Za-z_.:-]{1,64}$"
MAX_COUNT = 10**15
MAX_REVISION = 2**63 - 1  # PostgreSQL's bigint: a larger revision could not be stored
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
HOST_UNSAFE_RE = re.compile(r"[^0-9A-Za-z._-]+")


def clean_host(host: str) -> str:
    """The host name as the fleet panel and alerts show it: letters, digits, '.', '_' and '-'
    (what host names are made of); any other run of characters becomes one '-'. A report is
    written with the bot's token, so its host must never carry a mention (``@everyone``),
    markdown or a link into an alert (issue 15)."""
    return HOST_UNSAFE_RE.sub("-", host).strip("-")[:255] or "unknown"


def _strings(data: dict) -> list[tuple[str, str]]:
    """(field, text) of every string in a report, the events' counter names included."""
    found = [
        (name, data[name])
        for name in ("host", "client_version", "config_source", "last_sync_error")
        if isinstance(data.get(name), str)
    ]
    found += [("events", name) for name in data["events"]]
    for exposure in data["exposures"]:
        found.append(("exposures.variant", exposure["variant"]))  # rollout: KEY_RE already
    return found


def _check_text(name: str, value: str) -> None:
    """PostgreSQL stores neither NUL nor a lone surrogate: refuse them with a sentence (a 500
    before; issue 15)."""
    if "\x00" in value:
        raise ApiError(400, f"{name} must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        message = f"{name} must be valid Unicode text; it holds a lone surrogate."
        raise ApiError(400, message) from None


class ErrorOut(Schema):
    error: str


class ExposureIn(Schema):
    rollout: str = Field(..., pattern=KEY_RE)
    revision: int = Field(
        ..., ge=0, le=MAX_REVISION, description="The rollout's rule revision the decisions used."
    )
    variant: str = Field(..., min_length=1, max_length=64)
    count: int = Field(
        ..., ge=0, le=MAX_COUNT, description="Cumulative since the instance started."
    )


class ReportIn(Schema):
    instance_id: str = Field(..., pattern=INSTANCE_ID_RE)
    host: str = Field(..., min_length=1, max_length=255)
    pid: int = Field(..., ge=0, le=2**31 - 1)
    client_version: str = Field(..., min_length=1, max_length=64)
    started_at: datetime
    revision: int = Field(
        ..., ge=0, le=MAX_REVISION, description="The global config revision the instance serves."
    )
    config_source: str = Field("", max_length=16)
    exposures: list[ExposureIn] = Field(default_factory=list, max_length=2000)
    events: dict[str, int] = Field(default_factory=dict, max_length=32)
    last_sync_error: str | None = Field(None, max_length=2000)


class ReportOut(Schema):
    instance_id: str
    revision: int
    current_revision: int = Field(description="The server's revision now (newer: a sync is due).")


class InstanceOut(Schema):
    instance_id: str
    host: str
    pid: int
    client_version: str
    started_at: datetime
    last_seen_at: datetime
    revision: int
    state: str
    behind_seconds: float | None
    health: str
    events: dict[str, int]
    last_sync_error: str


class ChangeOut(Schema):
    audit_entry: int
    action: str
    revision: int
    created_at: datetime
    live: int
    acked: int
    seconds: float | None
    complete: bool
    all_acked_at: datetime | None
    overdue: list[str]


class FleetOut(Schema):
    instances: list[InstanceOut]
    latest_change: ChangeOut | None


@router.post(
    "/instances/report",
    auth=EVENTS_WRITE,
    response={200: ReportOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 413: ErrorOut},
)
def report(request: AuthenticatedRequest, payload: ReportIn):
    """One bot instance's report: who it is, the config revision it serves, its decisions per
    rollout, rule revision and variant (cumulative since it started), its event counters and its
    last sync error. Sent every ~15 s and right after each config change."""
    from .config import current_revision

    data = payload.model_dump()
    for name, value in _strings(data):
        _check_text(name, value)
    if data["started_at"].tzinfo is None:
        raise ApiError(400, "started_at must include a time zone (e.g. 2026-01-01T12:00:00Z).")
    try:
        started = data["started_at"].astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC
        started = None
    if started is None or not EARLIEST <= started <= timezone.now() + timedelta(days=1):
        raise ApiError(400, "started_at is not a plausible start time for a running process.")
    data["started_at"] = started
    data["host"] = clean_host(data["host"])
    if any(not k or len(k) > 64 for k in data["events"]):
        raise ApiError(400, "events: each counter name is 1-64 characters.")
    if any(not 0 <= v <= MAX_COUNT for v in data["events"].values()):
        raise ApiError(400, "events: each counter is an integer >= 0.")
    now = timezone.now()
    instance = fleet.record_report(data, token_name=request.auth.name, now=now)
    try:
        fleet.settle_changes(now)
    except Exception:  # noqa: BLE001 - the report is stored; settling is retried on the next one
        logger.exception("could not settle acknowledgements after a report")
    return {
        "instance_id": instance.instance_id,
        "revision": instance.revision,
        "current_revision": current_revision(),
    }


def _change_out(status: fleet.ChangeStatus) -> dict:
    entry = status.entry
    return {
        "audit_entry": entry.pk,
        "action": entry.action,
        "revision": entry.revision,
        "created_at": entry.created_at,
        "live": status.live,
        "acked": status.acked,
        "seconds": status.seconds,
        "complete": status.complete,
        "all_acked_at": status.settled.all_acked_at if status.settled else None,
        "overdue": [r.instance.instance_id for r in status.overdue],
    }


@router.get("/instances", auth=CONFIG_READ, response={200: FleetOut, 401: ErrorOut, 403: ErrorOut})
def instances(request: HttpRequest):
    """Every bot instance seen in the last minutes and how far the latest change has reached."""
    now = timezone.now()
    rows = fleet.fleet_rows(now)
    change = fleet.latest_change()
    return {
        "instances": [
            {
                "instance_id": r.instance.instance_id,
                "host": r.instance.host,
                "pid": r.instance.pid,
                "client_version": r.instance.client_version,
                "started_at": r.instance.started_at,
                "last_seen_at": r.instance.last_seen_at,
                "revision": r.instance.revision,
                "state": r.state,
                "behind_seconds": r.behind_seconds,
                "health": r.health,
                "events": {k: int(v) for k, v in (r.instance.events or {}).items()},
                "last_sync_error": r.instance.last_sync_error,
            }
            for r in rows
        ],
        "latest_change": _change_out(fleet.change_status(change, now)) if change else None,
    }
