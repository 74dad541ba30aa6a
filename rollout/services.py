"""Every write to a rollout: atomic, audited in the same transaction, revision-checked.

Each service locks the rollout row (``SELECT ... FOR UPDATE``), compares the caller's expected
revision when one is given (a stale write raises ``Conflict`` carrying the current state), does
nothing when nothing changes, bumps the global config revision and writes its audit row.
The emergency rollback takes no expected revision: it always wins.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from selcontrol.timestamps import BadTimestamp, check_storable
from selcontrol_client import assignment

from .models import (
    CHANNEL_ID_RE,
    ApiToken,
    AuditEntry,
    ChannelOverride,
    ChecklistTick,
    ConfigState,
    Phase,
    Rollout,
)

_CHANNEL_RE = re.compile(CHANNEL_ID_RE)
EDITABLE_FIELDS = ("enabled", "percentage", "simplified_percentage", "strategy")


class ServiceError(Exception):
    """A change that cannot be made; the message is a sentence for the person who asked."""

    status = 400


class InvalidChange(ServiceError):
    status = 422


class Conflict(ServiceError):
    """The caller's revision is stale; ``rollout`` holds the current state."""

    status = 409

    def __init__(self, message: str, rollout: Rollout):
        super().__init__(message)
        self.rollout = rollout


class GateNotMet(ServiceError):
    """Advancing before the phase's gates allow it needs an explicit override reason."""

    status = 409

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


class NotFound(ServiceError):
    status = 404


class PreconditionRequired(ServiceError):
    """A change that must name the revision it was decided on (releasing the kill switch)."""

    status = 428


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a user name or an API token's name, and through what."""

    name: str
    via: str = "web"  # web, api, admin, system

    @classmethod
    def of_user(cls, user, via: str = "web") -> Actor:
        return cls(name=user.get_username(), via=via)


def snapshot(rollout: Rollout) -> dict[str, Any]:
    """The rollout's state as recorded in audit rows and returned by the API."""
    phase = rollout.current_phase
    return {
        "enabled": rollout.enabled,
        "percentage": rollout.percentage,
        "simplified_percentage": rollout.simplified_percentage,
        "strategy": rollout.strategy,
        "phase": phase.name if phase else None,
        "revision": rollout.revision,
    }


def _lock(rollout: Rollout | str) -> Rollout:
    key = rollout.key if isinstance(rollout, Rollout) else rollout
    try:
        return (
            Rollout.objects.select_for_update(of=("self",))
            .select_related("current_phase")
            .get(key=key)
        )
    except Rollout.DoesNotExist:
        raise NotFound(f"There is no rollout named {key!r}.") from None


def _phase_of(locked: Rollout, phase: Phase | int) -> Phase:
    """``phase`` itself, or the locked rollout's phase of that number; it must be one of the
    rollout's."""
    if isinstance(phase, Phase):
        target = phase
    else:
        found = locked.phases.filter(order=phase).first()
        if found is None:
            raise InvalidChange(f"Rollout {locked.key} has no phase number {phase}.")
        target = found
    if target.rollout_id != locked.pk:
        raise InvalidChange(f"Phase {target.name} belongs to another rollout.")
    return target


def _check_revision(rollout: Rollout, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != rollout.revision:
        raise Conflict(
            f"The rollout changed since you loaded it (you had revision {expected_revision}, "
            f"it is now {rollout.revision}). Review the current state and try again.",
            rollout,
        )


def _bump(rollout: Rollout) -> int:
    """Bump the global config revision and stamp it on the rollout (caller saves)."""
    now = timezone.now()
    updated = ConfigState.objects.filter(pk=1).update(revision=F("revision") + 1, updated_at=now)
    if not updated:
        ConfigState.objects.create(pk=1, revision=rollout.revision + 1, updated_at=now)
    revision = ConfigState.objects.values_list("revision", flat=True).get(pk=1)
    rollout.revision = revision
    rollout.updated_at = now
    return revision


_ROLLOUT_REVISION: Any = object()


class AuditOutsideTransaction(RuntimeError):
    """An audit row written outside the transaction of the change it records."""


def record_audit(
    rollout: Rollout | None,
    action: str,
    actor: Actor,
    reason: str,
    before: dict,
    after: dict,
    at: datetime | None = None,
    *,
    revision: int | None = _ROLLOUT_REVISION,
) -> AuditEntry:
    """The one writer of audit rows, for every app (rollout's services here, metrics' guardrail,
    review and decision services). It must run inside the transaction of the change it records,
    so that the change and its row commit together or not at all; ``revision`` defaults to the
    rollout's (None without a rollout)."""
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(
            f"The {action} audit row must be written inside the service's transaction."
        )
    if revision is _ROLLOUT_REVISION:
        revision = rollout.revision if rollout else None
    return AuditEntry.objects.create(
        created_at=at or timezone.now(),
        rollout=rollout,
        action=action,
        actor=actor.name,
        via=actor.via,
        before=before,
        after=after,
        reason=reason,
        revision=revision,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidChange("Give a reason for the change; it is kept in the audit log.")
    if len(reason) > 2000:
        raise InvalidChange("The reason is longer than 2000 characters; shorten it.")
    return reason


def _validate_percentage(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidChange(f"{name} must be a whole number from 0 to 100.")
    if not 0 <= value <= 100:
        raise InvalidChange(f"{name} must be between 0 and 100; {value} is not.")
    return value


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidChange(
            f"{', '.join(sorted(unknown))} cannot be changed here; "
            f"the fields are {', '.join(EDITABLE_FIELDS)}."
        )
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "enabled":
            if not isinstance(value, bool):
                raise InvalidChange("enabled must be true or false.")
        elif name in ("percentage", "simplified_percentage"):
            value = _validate_percentage(name, value)
        elif name == "strategy" and value not in assignment.STRATEGIES:
            raise InvalidChange(
                f"strategy must be one of {', '.join(assignment.STRATEGIES)}; {value!r} is not."
            )
        clean[name] = value
    return clean


def _restart_watch_if_back_on_plan(rollout: Rollout, was_on_plan: bool) -> None:
    """A phase's minimum watch counts uninterrupted time at its planned percentage: a kill
    switch or an off-plan percentage interrupts it, and coming back onto the plan (re-enabled
    at the planned percentage, the slider moved back) starts it again (caller saves)."""
    if not was_on_plan and rollout.on_plan():
        rollout.phase_started_at = timezone.now()


@transaction.atomic
def update_rollout(
    rollout: Rollout | str,
    *,
    actor: Actor,
    reason: str,
    expected_revision: int | None = None,
    release_needs_revision: bool = False,
    **changes: Any,
) -> Rollout:
    """Change any of enabled, percentage, simplified_percentage and strategy.

    With ``release_needs_revision`` (the API's PATCH), turning a disabled rollout on without an
    expected revision is refused (428): a last-writer-wins write must not silently undo an
    emergency rollback its sender never saw. The check is made under the row lock."""
    changes = validate_changes(changes)
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    if (
        release_needs_revision
        and expected_revision is None
        and changes.get("enabled") is True
        and not locked.enabled
    ):
        raise PreconditionRequired(
            f"{locked.key} has its kill switch on; turning it back on needs the header "
            f'If-Match: "{locked.revision}" (the revision you saw, from GET '
            f"/api/v1/rollouts/{locked.key}), so that it cannot undo a rollback you have not seen."
        )
    changes = {k: v for k, v in changes.items() if getattr(locked, k) != v}
    if not changes:
        return locked
    before = snapshot(locked)
    was_on_plan = locked.on_plan()
    for name, value in changes.items():
        setattr(locked, name, value)
    _restart_watch_if_back_on_plan(locked, was_on_plan)
    _bump(locked)
    locked.save()
    if changes.get("enabled") is False:
        action = AuditEntry.Action.KILL_SWITCH_ENGAGE
    elif changes.get("enabled") is True:
        action = AuditEntry.Action.KILL_SWITCH_RELEASE
    else:
        action = AuditEntry.Action.ROLLOUT_UPDATE
    record_audit(locked, action, actor, reason, before, snapshot(locked))
    return locked


@transaction.atomic
def engage_kill_switch(rollout: Rollout | str, *, actor: Actor, reason: str) -> Rollout:
    """The emergency rollback: every channel to the control variant, overrides included.

    No revision check: an emergency always wins over whatever anyone else is doing.
    """
    reason = _require_reason(reason)
    locked = _lock(rollout)
    if not locked.enabled:
        return locked
    before = snapshot(locked)
    locked.enabled = False
    _bump(locked)
    locked.save()
    record_audit(
        locked, AuditEntry.Action.KILL_SWITCH_ENGAGE, actor, reason, before, snapshot(locked)
    )
    return locked


@transaction.atomic
def release_kill_switch(
    rollout: Rollout | str,
    *,
    actor: Actor,
    reason: str,
    percentage: int,
    expected_revision: int | None = None,
) -> Rollout:
    """The way back after a rollback: re-enable at a chosen percentage."""
    percentage = _validate_percentage("percentage", percentage)
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    if locked.enabled and locked.percentage == percentage:
        return locked
    before = snapshot(locked)
    was_on_plan = locked.on_plan()
    locked.enabled = True
    locked.percentage = percentage
    _restart_watch_if_back_on_plan(locked, was_on_plan)
    _bump(locked)
    locked.save()
    record_audit(
        locked, AuditEntry.Action.KILL_SWITCH_RELEASE, actor, reason, before, snapshot(locked)
    )
    return locked


PHASE_FIELDS = ("order", "name", "percentage", "min_watch", "max_watch")


def _phase_snapshot(phase: Phase | None) -> dict[str, Any]:
    if phase is None:
        return {}
    snap: dict[str, Any] = {f: getattr(phase, f) for f in PHASE_FIELDS}
    for name in ("min_watch", "max_watch"):
        snap[name] = snap[name].total_seconds() / 3600 if snap[name] is not None else None
    return snap


@transaction.atomic
def save_phase(phase: Phase, *, actor: Actor, reason: str) -> Phase:
    """Create or edit a step of the plan (the admin's phase forms), audited: its percentage is
    what advancing to it will apply. Bumps the revision (the rollout's state lists its phases)."""
    reason = _require_reason(reason)
    locked = _lock(Rollout.objects.only("key").get(pk=phase.rollout_id))
    before = _phase_snapshot(Phase.objects.filter(pk=phase.pk).first() if phase.pk else None)
    after = _phase_snapshot(phase)
    if before == after:
        return phase
    phase.save()
    _bump(locked)
    locked.save(update_fields=["revision", "updated_at"])
    record_audit(locked, AuditEntry.Action.PHASE_EDIT, actor, reason, before, after)
    return phase


@transaction.atomic
def delete_phase(phase: Phase, *, actor: Actor, reason: str) -> None:
    """Remove a step of the plan, audited."""
    reason = _require_reason(reason)
    locked = _lock(Rollout.objects.only("key").get(pk=phase.rollout_id))
    before = _phase_snapshot(phase)
    phase.delete()
    _bump(locked)
    locked.save(update_fields=["revision", "updated_at"])
    record_audit(locked, AuditEntry.Action.PHASE_EDIT, actor, reason, before, {})


def phase_gate_problems(rollout: Rollout, target: Phase, now: datetime | None = None) -> list[str]:
    """What stands between the rollout and ``target`` when it is a step forward (empty: none)."""
    current = rollout.current_phase
    if current is None or target.order <= current.order:
        return []
    problems = []
    asked, now = now, now or timezone.now()
    ends = rollout.phase_watch_ends_at()
    if ends is not None and now < ends:
        left = ends - now
        hours = left.total_seconds() / 3600
        problems.append(
            f"{current.name}'s minimum watch of {current.watch_label()} ends in "
            f"{hours:.1f} h ({ends:%Y-%m-%d %H:%M} UTC)."
        )
    from .checklist import unchecked_items  # the checklist belongs to the phase

    missing = unchecked_items(rollout, current)
    if missing:
        problems.append(
            f"The testing checklist of {current.name} has {len(missing)} unticked item(s): "
            f"{', '.join(missing)}."
        )
    off = rollout.off_plan()
    if off:
        problems.append(
            f"The rollout is {off}: the watch of {current.name} only counts at its planned "
            f"percentage. Re-apply {current.name} ({current.percentage}%; its watch restarts) or "
            "give an override reason."
        )
    from . import gates  # success criteria from other apps (metrics.guardrails.criteria)

    # "now" stays unset when the caller asked about the present, so the criteria computed for
    # the same page (metrics.guardrails.gate.for_rollout) are reused rather than read again
    problems.extend(gates.problems(rollout, target, asked))
    return problems


@transaction.atomic
def move_to_phase(
    rollout: Rollout | str,
    *,
    phase: Phase | int,
    actor: Actor,
    reason: str,
    expected_revision: int | None = None,
    gate_override_reason: str = "",
    now: datetime | None = None,
) -> Rollout:
    """Advance, or step back, to a phase of the plan; its percentage takes effect.

    A step forward before the current phase's minimum watch has passed, or with its checklist
    unticked, needs ``gate_override_reason``. Moving to a phase re-enables the rollout.
    """
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    target = _phase_of(locked, phase)
    if (
        locked.current_phase_id == target.pk
        and locked.enabled
        and locked.percentage == target.percentage
    ):
        return locked
    problems = phase_gate_problems(locked, target, now)
    override = (gate_override_reason or "").strip()
    if problems and not override:
        raise GateNotMet(
            "Not ready to advance: "
            + " ".join(problems)
            + " Advance anyway only with an explicit override reason.",
            problems,
        )
    before = snapshot(locked)
    locked.current_phase = target
    locked.phase_started_at = now or timezone.now()
    locked.percentage = target.percentage
    locked.enabled = True
    _bump(locked)
    locked.save()
    full_reason = (
        reason if not problems else f"{reason} [gate override: {override}; {' '.join(problems)}]"
    )
    # a back-dated move (the simulator's demo) is recorded at the time it stands for
    record_audit(
        locked, AuditEntry.Action.PHASE_CHANGE, actor, full_reason, before, snapshot(locked), at=now
    )
    return locked


def _validate_channel_id(channel_id: str) -> str:
    channel_id = str(channel_id).strip()
    if not _CHANNEL_RE.match(channel_id):
        raise InvalidChange(
            f"{channel_id[:80]!r} is not a channel id; use the channel's id (a Discord snowflake "
            "such as 1234567890123456789)."
        )
    return channel_id


@transaction.atomic
def set_override(
    rollout: Rollout | str,
    channel_id: str,
    *,
    variant: str,
    actor: Actor,
    reason: str,
    expires_at: datetime | None = None,
    expected_revision: int | None = None,
) -> tuple[ChannelOverride, bool]:
    """Force a channel to a variant. Returns the override and whether it was created."""
    channel_id = _validate_channel_id(channel_id)
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    problem = locked.channel_id_problem(channel_id)
    if problem:  # removing such an override stays possible (remove_override does not check)
        raise InvalidChange(problem)
    if variant not in locked.variants:
        raise InvalidChange(
            f"variant must be one of {', '.join(locked.variants)}; {variant!r} is not."
        )
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            raise InvalidChange("expires_at needs a time zone, e.g. 2026-12-01T12:00:00Z.")
        try:
            expires_at = check_storable(expires_at, "expires_at")
        except BadTimestamp as exc:
            raise InvalidChange(str(exc)) from None
        if expires_at <= timezone.now():
            raise InvalidChange("expires_at is in the past; give a future time or none.")
    existing = ChannelOverride.objects.filter(rollout=locked, channel_id=channel_id).first()
    before = _override_snapshot(existing)
    if existing and existing.variant == variant and existing.expires_at == expires_at:
        return existing, False
    if existing:
        existing.variant, existing.expires_at, existing.reason = variant, expires_at, reason
        existing.created_by, existing.created_at = actor.name, timezone.now()
        existing.save()
        override, created = existing, False
    else:
        override = ChannelOverride.objects.create(
            rollout=locked,
            channel_id=channel_id,
            variant=variant,
            reason=reason,
            created_by=actor.name,
            expires_at=expires_at,
        )
        created = True
    _bump(locked)
    locked.save(update_fields=["revision", "updated_at"])
    record_audit(
        locked, AuditEntry.Action.OVERRIDE_SET, actor, reason, before, _override_snapshot(override)
    )
    return override, created


@transaction.atomic
def remove_override(
    rollout: Rollout | str,
    channel_id: str,
    *,
    actor: Actor,
    reason: str,
    expected_revision: int | None = None,
) -> bool:
    """Remove a channel's override. Returns False when there was none."""
    channel_id = _validate_channel_id(channel_id)
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    existing = ChannelOverride.objects.filter(rollout=locked, channel_id=channel_id).first()
    if existing is None:
        return False
    before = _override_snapshot(existing)
    existing.delete()
    _bump(locked)
    locked.save(update_fields=["revision", "updated_at"])
    record_audit(
        locked, AuditEntry.Action.OVERRIDE_REMOVE, actor, reason, before, {"channel_id": channel_id}
    )
    return True


def _override_snapshot(override: ChannelOverride | None) -> dict[str, Any]:
    if override is None:
        return {}
    return {
        "channel_id": override.channel_id,
        "variant": override.variant,
        "expires_at": override.expires_at.isoformat() if override.expires_at else None,
    }


@transaction.atomic
def create_api_token(*, name: str, scopes: list[str], actor: Actor) -> tuple[ApiToken, str]:
    """Create a token; returns it and the raw secret, which is shown once and never stored."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidChange("A token needs a name of 1-100 characters, e.g. sel-bot-prod.")
    valid = set(ApiToken.Scope.values)
    bad = [s for s in scopes if s not in valid]
    if bad or not scopes:
        raise InvalidChange(
            f"Scopes must be some of {', '.join(sorted(valid))}"
            + (f"; {', '.join(bad)} is not one." if bad else ".")
        )
    taken = InvalidChange(f"A token named {name!r} exists already; pick another name.")
    if ApiToken.objects.filter(name=name).exists():
        raise taken
    raw = ApiToken.PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():  # a savepoint: a racing create of the same name loses here
            token = ApiToken.objects.create(
                name=name,
                token_hash=ApiToken.hash(raw),
                hint=raw[:7],
                scopes=sorted(set(scopes)),
                created_by=actor.name,
            )
    except IntegrityError:
        raise taken from None
    record_audit(
        None,
        AuditEntry.Action.TOKEN_CREATE,
        actor,
        f"token {name}",
        {},
        {"name": name, "scopes": token.scopes},
    )
    return token, raw


@transaction.atomic
def revoke_api_token(token: ApiToken, *, actor: Actor) -> ApiToken:
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    record_audit(
        None,
        AuditEntry.Action.TOKEN_REVOKE,
        actor,
        f"token {token.name}",
        {"name": token.name},
        {"name": token.name, "revoked": True},
    )
    return token


@transaction.atomic
def hold_phase(
    rollout: Rollout | str,
    *,
    actor: Actor,
    reason: str,
    expected_revision: int | None = None,
) -> AuditEntry:
    """Record the decision to stay in the current phase (nothing changes for the bot).

    The audit row is a ``phase.hold`` (its own kind: nothing moved) whose ``after`` carries
    ``"decision": "hold"``.
    """
    reason = _require_reason(reason)
    locked = _lock(rollout)
    _check_revision(locked, expected_revision)
    if locked.current_phase is None:
        raise InvalidChange("The rollout has not started; there is no phase to hold.")
    state = snapshot(locked)
    return record_audit(
        locked, AuditEntry.Action.PHASE_HOLD, actor, reason, state, {**state, "decision": "hold"}
    )


@transaction.atomic
def tick_checklist_item(
    rollout: Rollout | str,
    phase: Phase | int,
    item: str,
    *,
    actor: Actor,
    checked: bool,
    reason: str = "",
) -> ChecklistTick | None:
    """Tick (``checked=True``) or clear one testing-checklist item of a phase.

    Returns the tick, or None when the item is (now) unticked. A no-op when nothing changes.
    The checklist is not part of the bot's config, so the config revision is not bumped.
    """
    from .checklist import ITEM_KEYS, LABELS

    locked = _lock(rollout)
    target = _phase_of(locked, phase)
    if item not in ITEM_KEYS:
        raise InvalidChange(f"item must be one of {', '.join(ITEM_KEYS)}; {item!r} is not.")
    reason = (reason or "").strip()[:2000]
    existing = ChecklistTick.objects.filter(phase=target, item=item).first()
    if bool(existing) == bool(checked):
        return existing
    before = {"phase": target.name, "item": item, "checked": existing is not None}
    if checked:
        tick = ChecklistTick.objects.create(
            rollout=locked, phase=target, item=item, checked_by=actor.name, note=reason
        )
    else:
        # Unticking changes something only when a tick exists (the early return above).
        assert existing is not None
        existing.delete()
        tick = None
    after = {"phase": target.name, "item": item, "checked": bool(checked)}
    verb = "ticked" if checked else "cleared"
    record_audit(
        locked,
        AuditEntry.Action.CHECKLIST,
        actor,
        reason or f"{verb} {LABELS[item]} for {target.name}",
        before,
        after,
    )
    return tick
